-- The relay is woken in its own process after the writer's commit, and polls
-- for rows other processes wrote (outbox.py). The pg_notify trigger of
-- 0001 made PostgreSQL serialize the commits of every transaction that wrote
-- an outbox row: a notifying transaction holds the notification queue's lock
-- through its WAL flush (docs/decisions/kafka.md).
DROP TRIGGER outbox_notify ON outbox;
DROP FUNCTION outbox_notify();
