-- One decision per order. The primary key on order_id is what makes a
-- re-delivered order-placed event (even under a new event id) produce no
-- second decision. Order ids are kept as the canonical text of the UUID the
-- event carried. The kit's migration runner creates the outbox and
-- processed_events tables first.

CREATE TABLE decisions (
    order_id       text PRIMARY KEY CHECK (order_id ~ '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'),
    event_id       text NOT NULL UNIQUE,
    customer_id    text NOT NULL,
    currency_code  text NOT NULL,
    total_minor    bigint NOT NULL,
    verdict        text NOT NULL CHECK (verdict IN ('APPROVE', 'REJECT')),
    risk_score     integer NOT NULL CHECK (risk_score BETWEEN 0 AND 100),
    reason         text NOT NULL,
    decided_at     timestamptz NOT NULL
);

CREATE INDEX decisions_customer_idx ON decisions (customer_id, decided_at DESC);
