-- Products, prices and stock, and the stock reserved for orders.

CREATE TABLE products (
    id              text        PRIMARY KEY,
    name            text        NOT NULL,
    description     text        NOT NULL DEFAULT '',
    category        text        NOT NULL DEFAULT '',
    -- Money in the currency's minor unit (cents): never floating point.
    price_minor     bigint      NOT NULL CHECK (price_minor >= 0),
    currency_code   text        NOT NULL CHECK (currency_code ~ '^[A-Z]{3}$'),
    stock_on_hand   integer     NOT NULL CHECK (stock_on_hand >= 0),
    -- Units promised to orders by active reservations; kept equal to the sum of
    -- stock_reservations.quantity in state 'reserved' by the service, which
    -- changes both in one transaction with the product row locked.
    stock_reserved  integer     NOT NULL DEFAULT 0,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    -- The last line of defence against overselling.
    CONSTRAINT stock_reserved_within_on_hand
        CHECK (stock_reserved >= 0 AND stock_reserved <= stock_on_hand)
);

CREATE TABLE stock_reservations (
    order_id    text        NOT NULL,
    product_id  text        NOT NULL REFERENCES products (id),
    quantity    integer     NOT NULL CHECK (quantity > 0),
    state       text        NOT NULL DEFAULT 'reserved' CHECK (state IN ('reserved', 'released')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    released_at timestamptz,
    PRIMARY KEY (order_id, product_id)
);

CREATE INDEX stock_reservations_active_by_product
    ON stock_reservations (product_id) WHERE state = 'reserved';

-- Orders whose stock was released, even when they had reserved nothing yet:
-- a reservation that arrives after its own order's release is refused instead
-- of holding stock that nobody would ever release.
CREATE TABLE stock_releases (
    order_id    text        PRIMARY KEY,
    released_at timestamptz NOT NULL DEFAULT now()
);
