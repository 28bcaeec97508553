-- kongfb store schema v1 (SQLite).
-- kongfb_meta holds the configuration version: every write transaction
-- starts by incrementing it, which also takes SQLite's write lock.
CREATE TABLE kongfb_meta (
  id      INTEGER PRIMARY KEY CHECK (id = 1),
  version INTEGER NOT NULL
);
INSERT INTO kongfb_meta (id, version) VALUES (1, 0);

-- One row per entity, in Kong's Admin-API JSON form.
CREATE TABLE kongfb_entities (
  coll TEXT NOT NULL,
  id   TEXT NOT NULL,
  data TEXT NOT NULL,
  PRIMARY KEY (coll, id)
);

-- Unique keys (services.name, targets (upstream,target), plugins' cache key…):
-- the primary key makes a second owner of a value impossible.
CREATE TABLE kongfb_uniques (
  coll   TEXT NOT NULL,
  ukey   TEXT NOT NULL,
  uvalue TEXT NOT NULL,
  id     TEXT NOT NULL,
  PRIMARY KEY (coll, ukey, uvalue)
);
CREATE INDEX kongfb_uniques_owner ON kongfb_uniques (coll, id);

-- Foreign references, for cascade/restrict on delete and for nested listings.
CREATE TABLE kongfb_refs (
  coll     TEXT NOT NULL,
  id       TEXT NOT NULL,
  field    TEXT NOT NULL,
  ref_coll TEXT NOT NULL,
  ref_id   TEXT NOT NULL,
  PRIMARY KEY (coll, id, field)
);
CREATE INDEX kongfb_refs_target ON kongfb_refs (ref_coll, ref_id);
CREATE INDEX kongfb_refs_filter ON kongfb_refs (coll, field, ref_id, id);

-- Tags, for ?tags= filters and GET /tags.
CREATE TABLE kongfb_tags (
  coll TEXT NOT NULL,
  id   TEXT NOT NULL,
  tag  TEXT NOT NULL,
  PRIMARY KEY (coll, id, tag)
);
CREATE INDEX kongfb_tags_tag ON kongfb_tags (tag, coll, id);
