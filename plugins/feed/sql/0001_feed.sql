-- feed: the in-app notification feed. One row per outbox row delivered on the "feed"
-- channel; type, title, body, data and created_at stay in sp_outbox.
--
-- seq numbers a person's items in the order they reached the feed. It comes from
-- feed_users.last_seq, incremented under that row's lock in the delivering statement,
-- so a person's items become visible (commit) in seq order: a reader that has seen
-- seq N never finds a smaller one later. SSE event ids and list cursors rely on it.
CREATE TABLE feed_users (
    user_id  uuid PRIMARY KEY REFERENCES sp_users (id) ON DELETE CASCADE,
    last_seq bigint NOT NULL
);

CREATE TABLE feed_items (
    outbox_id    uuid PRIMARY KEY REFERENCES sp_outbox (id) ON DELETE CASCADE,
    user_id      uuid NOT NULL REFERENCES sp_users (id) ON DELETE CASCADE,
    seq          bigint NOT NULL,
    delivered_at timestamptz NOT NULL DEFAULT now(),
    read_at      timestamptz,
    UNIQUE (user_id, seq)
);
CREATE INDEX feed_items_unread ON feed_items (user_id, seq) WHERE read_at IS NULL;
