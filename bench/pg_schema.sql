-- PostgreSQL peer of the StemeDB claim store: the same fields, one row per assertion,
-- and an index that serves "best claim for this subject and predicate" (lowest source
-- class, then highest confidence) without a sort.
CREATE TABLE assertions (
    hash bytea PRIMARY KEY,            -- BLAKE2b-256 of the canonical bytes (32 bytes)
    subject text NOT NULL,
    predicate text NOT NULL,
    object jsonb NOT NULL,             -- {"type": ..., "value": ...}
    confidence double precision NOT NULL,
    source_class smallint NOT NULL,    -- tier 0 (regulatory) .. 5 (anecdotal)
    lifecycle smallint NOT NULL,
    "timestamp" bigint NOT NULL,       -- Unix seconds
    signatures bytea NOT NULL          -- per signer: agent id 32 B, signature 64 B, u64 timestamp
);

CREATE INDEX assertions_claim ON assertions (subject, predicate, source_class, confidence DESC);
