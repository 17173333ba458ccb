"""Sample tasks for `conveyor demo` (see `conveyor.demo.tasks`)."""
