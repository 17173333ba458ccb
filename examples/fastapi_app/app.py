"""A FastAPI service that saves an order and enqueues its receipt email in one transaction.

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/shop conveyor migrate
    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/shop uvicorn app:app
    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/shop conveyor worker --app app:conveyor

If the request fails after the order is written (the enqueue refuses the payload, the
database goes away, the handler raises), neither the order nor the job exists: no receipt
for an order that was never saved, and no saved order without its receipt.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Depends, FastAPI
from pydantic import BaseModel, Field
from sqlalchemy import Integer, String, create_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from conveyor import Conveyor

# Conveyor reads DATABASE_URL, REDIS_URL, DATABASE_SCHEMA, ... from the environment.
conveyor = Conveyor()
# The same database, through SQLAlchemy's psycopg 3 driver. SHOP_SCHEMA (optional) is
# where the example's own table lives.
engine = create_engine(
    conveyor.settings.database.url.replace("postgresql://", "postgresql+psycopg://", 1),
    connect_args={"options": f"-c search_path={os.environ.get('SHOP_SCHEMA', 'public')}"},
    pool_size=2,
)


class Base(DeclarativeBase):
    pass


class Order(Base):
    __tablename__ = "orders"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    email: Mapped[str] = mapped_column(String(320))
    total_cents: Mapped[int] = mapped_column(Integer)


class Receipt(BaseModel):
    order_id: int
    email: str = Field(min_length=3, max_length=320)


@conveyor.task(queue="emails", name="shop.send_receipt")
def send_receipt(receipt: Receipt) -> None:
    print(f"receipt for order {receipt.order_id} sent to {receipt.email}")


class OrderIn(BaseModel):
    email: str = Field(min_length=3, max_length=320)
    total_cents: int = Field(gt=0)


@asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    Base.metadata.create_all(engine)  # a real service runs its own migrations instead
    yield
    conveyor.close()
    engine.dispose()


app = FastAPI(title="shop", lifespan=lifespan)


def session() -> Iterator[Session]:
    with Session(engine) as db:
        yield db


@app.post("/orders", status_code=201)
def place_order(order: OrderIn, db: Annotated[Session, Depends(session)]) -> dict[str, Any]:
    with db.begin():  # commits at the end of the block, or rolls back on an exception
        row = Order(email=order.email, total_cents=order.total_cents)
        db.add(row)
        db.flush()  # gives the row its id
        job_id = conveyor.enqueue(
            send_receipt, Receipt(order_id=row.id, email=row.email), connection=db
        )
    return {"order_id": row.id, "receipt_job": str(job_id)}
