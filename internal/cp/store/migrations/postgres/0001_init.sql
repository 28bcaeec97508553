-- kongfb store schema v1 (PostgreSQL).
-- Text columns use the "C" collation so that ordering (and therefore
-- pagination) is byte order, the same as SQLite's.
-- kongfb_meta holds the configuration version: every write transaction
-- starts by incrementing it, which locks the row and serialises writers
-- across every CP sharing this database.
CREATE TABLE kongfb_meta (
  id      INTEGER PRIMARY KEY CHECK (id = 1),
  version BIGINT NOT NULL
);
INSERT INTO kongfb_meta (id, version) VALUES (1, 0);

-- One row per entity, in Kong's Admin-API JSON form.
CREATE TABLE kongfb_entities (
  coll TEXT COLLATE "C" NOT NULL,
  id   TEXT COLLATE "C" NOT NULL,
  data JSONB NOT NULL,
  PRIMARY KEY (coll, id)
);

-- Unique keys (services.name, targets (upstream,target), plugins' cache key…).
CREATE TABLE kongfb_uniques (
  coll   TEXT COLLATE "C" NOT NULL,
  ukey   TEXT COLLATE "C" NOT NULL,
  uvalue TEXT COLLATE "C" NOT NULL,
  id     TEXT COLLATE "C" NOT NULL,
  PRIMARY KEY (coll, ukey, uvalue)
);
CREATE INDEX kongfb_uniques_owner ON kongfb_uniques (coll, id);

-- Foreign references, for cascade/restrict on delete and for nested listings.
CREATE TABLE kongfb_refs (
  coll     TEXT COLLATE "C" NOT NULL,
  id       TEXT COLLATE "C" NOT NULL,
  field    TEXT COLLATE "C" NOT NULL,
  ref_coll TEXT COLLATE "C" NOT NULL,
  ref_id   TEXT COLLATE "C" NOT NULL,
  PRIMARY KEY (coll, id, field)
);
CREATE INDEX kongfb_refs_target ON kongfb_refs (ref_coll, ref_id);
CREATE INDEX kongfb_refs_filter ON kongfb_refs (coll, field, ref_id, id);

-- Tags, for ?tags= filters and GET /tags.
CREATE TABLE kongfb_tags (
  coll TEXT COLLATE "C" NOT NULL,
  id   TEXT COLLATE "C" NOT NULL,
  tag  TEXT COLLATE "C" NOT NULL,
  PRIMARY KEY (coll, id, tag)
);
CREATE INDEX kongfb_tags_tag ON kongfb_tags (tag, coll, id);
