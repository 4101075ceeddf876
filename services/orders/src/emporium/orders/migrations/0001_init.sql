-- Orders, their lines and the idempotency keys that placed them.
-- The kit's migration runner creates the outbox and processed_events tables first.

CREATE TABLE orders (
    order_id       uuid PRIMARY KEY,
    customer_id    text NOT NULL CHECK (length(customer_id) BETWEEN 1 AND 64),
    status         text NOT NULL CHECK (status IN ('PENDING', 'APPROVED', 'REJECTED')),
    status_reason  text NOT NULL DEFAULT '',
    currency_code  text NOT NULL CHECK (length(currency_code) = 3),
    total_minor    bigint NOT NULL CHECK (total_minor >= 0),
    created_at     timestamptz NOT NULL,
    updated_at     timestamptz NOT NULL
);

CREATE INDEX orders_customer_created_idx ON orders (customer_id, created_at DESC);

CREATE TABLE order_lines (
    order_id          uuid NOT NULL REFERENCES orders (order_id) ON DELETE CASCADE,
    line_no           smallint NOT NULL CHECK (line_no >= 0),
    product_id        text NOT NULL,
    quantity          integer NOT NULL CHECK (quantity BETWEEN 1 AND 100),
    unit_price_minor  bigint NOT NULL CHECK (unit_price_minor >= 0),
    PRIMARY KEY (order_id, line_no),
    UNIQUE (order_id, product_id)
);

-- One row per key: the unique primary key is what makes concurrent checkouts
-- with the same key produce one order. Kept apart from orders so keys can be
-- expired later without touching the orders themselves.
CREATE TABLE idempotency_keys (
    idempotency_key      text PRIMARY KEY CHECK (length(idempotency_key) BETWEEN 8 AND 128),
    order_id             uuid NOT NULL UNIQUE REFERENCES orders (order_id) ON DELETE CASCADE,
    request_fingerprint  text NOT NULL,
    created_at           timestamptz NOT NULL
);
