-- Events a consumer group has already handled, written in the same
-- transaction as the handler's effect: a redelivered event finds its id here
-- and is skipped, so its effect happens once.
CREATE TABLE processed_events (
    consumer_group  text        NOT NULL,
    event_id        text        NOT NULL,
    topic           text        NOT NULL,
    kafka_partition integer     NOT NULL,
    kafka_offset    bigint      NOT NULL,
    outcome         text        NOT NULL DEFAULT 'processed'
        CHECK (outcome IN ('processed', 'dead_lettered')),
    processed_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer_group, event_id)
);

-- Lets an operator prune the ledger by age once redeliveries that old
-- cannot happen any more (longer than the topic's retention).
CREATE INDEX processed_events_processed_at_idx ON processed_events (processed_at);
