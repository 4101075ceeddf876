-- "Bought together": how many orders contained both products, stored in both
-- directions so one index answers "what goes with X".

CREATE TABLE co_purchases (
    product_id       text        NOT NULL,
    other_product_id text        NOT NULL,
    orders_count     bigint      NOT NULL CHECK (orders_count > 0),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (product_id, other_product_id),
    CHECK (product_id <> other_product_id)
);

CREATE INDEX co_purchases_top ON co_purchases (product_id, orders_count DESC, other_product_id);

-- Orders already counted. The consumer's processed-event ledger makes one
-- event count once; this makes one order count once even if it were ever
-- announced again under a new event id.
CREATE TABLE counted_orders (
    order_id   text        PRIMARY KEY,
    counted_at timestamptz NOT NULL DEFAULT now()
);
