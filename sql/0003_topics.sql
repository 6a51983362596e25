-- Topics: a taxonomy (themes → sub-topics) with slugs, labels and synonyms, and the
-- topic profile of each organisation: what it offers and what it seeks, level 1–3.
CREATE TABLE sp_topics (
    id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    slug       text NOT NULL UNIQUE
               CHECK (slug ~ '^[a-z0-9]+(-[a-z0-9]+)*$' AND length(slug) <= 80),
    label      text NOT NULL CHECK (length(label) BETWEEN 1 AND 200),
    parent_id  uuid REFERENCES sp_topics (id),
    synonyms   text[] NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CHECK (parent_id IS DISTINCT FROM id)
);
CREATE INDEX sp_topics_parent ON sp_topics (parent_id);

CREATE TABLE sp_org_topics (
    org_id   uuid NOT NULL REFERENCES sp_organizations (id) ON DELETE CASCADE,
    relation text NOT NULL CHECK (relation IN ('offers', 'seeks')),
    topic_id uuid NOT NULL REFERENCES sp_topics (id),
    level    smallint NOT NULL CHECK (level BETWEEN 1 AND 3),
    PRIMARY KEY (org_id, relation, topic_id)
);
CREATE INDEX sp_org_topics_topic ON sp_org_topics (topic_id, relation);

CREATE INDEX sp_organizations_kind ON sp_organizations (kind);
CREATE INDEX sp_organizations_country ON sp_organizations (country);
CREATE INDEX sp_organizations_page ON sp_organizations (name, id);
