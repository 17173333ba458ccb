"""The dashboard's pages, one module per view; `conveyor.web.dashboard` gathers them."""
