-- Stock that checkout asked the catalog to reserve for an order not committed yet.
--
-- A row is committed BEFORE the ReserveStock call and deleted by the
-- transaction that commits the order (only while it is still 'pending'). A row
-- that outlives the checkout (the commit failed and the compensating release
-- was lost, or the process died in between) is claimed by the reservation
-- sweeper ('releasing'), whose release at the catalog is idempotent. The row
-- lock is the fence: an order commits only if the sweeper has not claimed its
-- reservation, and the sweeper never claims one whose commit is in progress.
CREATE TABLE pending_reservations (
    order_id    uuid        PRIMARY KEY,
    state       text        NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'releasing')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    claimed_at  timestamptz
);

CREATE INDEX pending_reservations_created_idx ON pending_reservations (created_at);
