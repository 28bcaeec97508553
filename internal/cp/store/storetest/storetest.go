package storetest

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/kongfb/kongfb/internal/cp/store"
)

// Run runs the conformance suite against the backend of h.
func Run(t *testing.T, h Harness) {
	tests := []struct {
		name string
		fn   func(t *testing.T, h Harness)
	}{
		{"CRUD", testCRUD},
		{"UpsertByKey", testUpsertByKey},
		{"Update", testUpdate},
		{"Unique", testUnique},
		{"UniqueCacheKeys", testUniqueCacheKeys},
		{"ForeignKeys", testForeignKeys},
		{"Cascade", testCascade},
		{"Pagination", testPagination},
		{"ListFilter", testListFilter},
		{"Tags", testTags},
		{"ListTags", testListTags},
		{"ReplaceAll", testReplaceAll},
		{"ReplaceAllAtomic", testReplaceAllAtomic},
		{"Version", testVersion},
		{"Export", testExport},
		{"Watch", testWatch},
		{"WatchPeer", testWatchPeer},
		{"ConcurrentWriters", testConcurrentWriters},
		{"ConcurrentPeers", testConcurrentPeers},
		{"Closed", testClosed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, h) })
	}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// Service returns a services row in Admin-API form (the store does not
// validate fields, so only what the tests look at is set).
func Service(name string, tags ...string) store.Row {
	r := store.Row{"host": "example.test", "port": 80, "protocol": "http", "tags": nilIfEmpty(tags)}
	if name != "" {
		r["name"] = name
	}
	return r
}

func nilIfEmpty(tags []string) any {
	if len(tags) == 0 {
		return nil
	}
	out := make([]any, len(tags))
	for i, t := range tags {
		out[i] = t
	}
	return out
}

func ref(id string) map[string]any { return map[string]any{"id": id} }

func mustInsert(t *testing.T, s store.Store, coll string, row store.Row) store.Row {
	t.Helper()
	out, err := s.Insert(ctxT(t), coll, row)
	if err != nil {
		t.Fatalf("insert %s %v: %v", coll, row, err)
	}
	return out
}

func idOf(r store.Row) string { id, _ := r["id"].(string); return id }

func expectNotFound(t *testing.T, s store.Store, coll, id string) {
	t.Helper()
	if _, err := s.Get(ctxT(t), coll, id); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("get %s %s: want ErrNotFound, got %v", coll, id, err)
	}
}

func expectExists(t *testing.T, s store.Store, coll, id string) {
	t.Helper()
	if _, err := s.Get(ctxT(t), coll, id); err != nil {
		t.Fatalf("get %s %s: %v", coll, id, err)
	}
}

func testCRUD(t *testing.T, h Harness) {
	s := h.New(t)
	ctx := ctxT(t)
	before := time.Now().Unix()
	svc := mustInsert(t, s, "services", Service("svc-a", "t1"))
	id := idOf(svc)
	if _, err := uuid.Parse(id); err != nil {
		t.Fatalf("generated id %q is not a uuid: %v", id, err)
	}
	if svc["name"] != "svc-a" || svc["host"] != "example.test" || svc["port"] != float64(80) {
		t.Fatalf("stored row = %v", svc)
	}
	ca, ok := svc["created_at"].(float64)
	if !ok || int64(ca) < before || svc["updated_at"] == nil {
		t.Fatalf("timestamps not set: created_at=%v updated_at=%v", svc["created_at"], svc["updated_at"])
	}
	if float64(int64(ca)) != ca {
		t.Fatalf("services created_at must be integer seconds, got %v", ca)
	}
	got, err := s.Get(ctx, "services", id)
	if err != nil {
		t.Fatalf("get: %v", err)
	}
	if fmt.Sprint(got) != fmt.Sprint(svc) {
		t.Fatalf("get = %v, insert returned %v", got, svc)
	}
	byName, err := s.GetByKey(ctx, "services", store.Key{"name": "svc-a"})
	if err != nil || idOf(byName) != id {
		t.Fatalf("get by name: %v %v", byName, err)
	}
	byID, err := s.GetByKey(ctx, "services", store.Key{"id": id})
	if err != nil || idOf(byID) != id {
		t.Fatalf("get by key id: %v %v", byID, err)
	}
	if _, err := s.GetByKey(ctx, "services", store.Key{"name": "nope"}); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("get by unknown name: want ErrNotFound, got %v", err)
	}
	if _, err := s.GetByKey(ctx, "services", store.Key{"host": "x"}); !errors.Is(err, store.ErrInvalidArgument) {
		t.Fatalf("get by non-unique field: want ErrInvalidArgument, got %v", err)
	}

	// A duplicate primary key is refused and changes nothing.
	dup := Service("svc-other")
	dup["id"] = id
	var pk *store.PrimaryKeyViolation
	if _, err := s.Insert(ctx, "services", dup); !errors.As(err, &pk) || pk.ID != id {
		t.Fatalf("insert duplicate id: want PrimaryKeyViolation, got %v", err)
	}
	if want := fmt.Sprintf(`primary key violation on key '{id="%s"}'`, id); pk.KongMessage() != want {
		t.Fatalf("message %q, want %q", pk.KongMessage(), want)
	}

	// Upsert replaces the whole row and keeps created_at.
	repl := Service("svc-a2")
	repl["id"] = id
	repl["port"] = 8080
	up, err := s.Upsert(ctx, "services", repl)
	if err != nil {
		t.Fatalf("upsert: %v", err)
	}
	if up["name"] != "svc-a2" || up["port"] != float64(8080) || up["tags"] != nil || up["created_at"] != svc["created_at"] {
		t.Fatalf("upserted row = %v", up)
	}
	if _, err := s.GetByKey(ctx, "services", store.Key{"name": "svc-a"}); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("old name still indexed after upsert: %v", err)
	}
	// Upsert creates with the given id.
	newID := uuid.NewString()
	created := Service("svc-b")
	created["id"] = newID
	if _, err := s.Upsert(ctx, "services", created); err != nil {
		t.Fatalf("upsert create: %v", err)
	}
	expectExists(t, s, "services", newID)
	if _, err := s.Upsert(ctx, "services", Service("no-id")); !errors.Is(err, store.ErrInvalidArgument) {
		t.Fatalf("upsert without id: want ErrInvalidArgument, got %v", err)
	}

	if err := s.Delete(ctx, "services", id); err != nil {
		t.Fatalf("delete: %v", err)
	}
	expectNotFound(t, s, "services", id)
	if err := s.Delete(ctx, "services", id); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("delete again: want ErrNotFound, got %v", err)
	}
	// The name is free again.
	mustInsert(t, s, "services", Service("svc-a2"))

	if _, err := s.Get(ctx, "Bad Coll", "x"); !errors.Is(err, store.ErrInvalidArgument) {
		t.Fatalf("bad collection name: want ErrInvalidArgument, got %v", err)
	}
	// Collections without Kong rules are stored verbatim.
	v := mustInsert(t, s, "vaults", store.Row{"prefix": "env", "name": "env", "config": map[string]any{"a": 1}})
	expectExists(t, s, "vaults", idOf(v))

	// Targets use millisecond float timestamps.
	up2 := mustInsert(t, s, "upstreams", store.Row{"name": "u1"})
	tg := mustInsert(t, s, "targets", store.Row{"upstream": ref(idOf(up2)), "target": "a:80"})
	if _, ok := tg["created_at"].(float64); !ok {
		t.Fatalf("target created_at = %v", tg["created_at"])
	}
}

func testUpsertByKey(t *testing.T, h Harness) {
	s := h.New(t)
	ctx := ctxT(t)
	first, err := s.UpsertByKey(ctx, "routes", "name", store.Row{"name": "r1", "paths": []any{"/a"}})
	if err != nil {
		t.Fatalf("upsert by key (create): %v", err)
	}
	second, err := s.UpsertByKey(ctx, "routes", "name", store.Row{"name": "r1", "paths": []any{"/b"}})
	if err != nil {
		t.Fatalf("upsert by key (replace): %v", err)
	}
	if idOf(first) != idOf(second) || fmt.Sprint(second["paths"]) != "[/b]" || second["created_at"] != first["created_at"] {
		t.Fatalf("replace by key: first %v, second %v", first, second)
	}
	page, err := s.List(ctx, "routes", store.ListOptions{})
	if err != nil || len(page.Rows) != 1 {
		t.Fatalf("want one route, got %v %v", page.Rows, err)
	}
	// A given id is used when creating.
	id := uuid.NewString()
	third, err := s.UpsertByKey(ctx, "routes", "name", store.Row{"id": id, "name": "r2"})
	if err != nil || idOf(third) != id {
		t.Fatalf("upsert by key with id: %v %v", third, err)
	}
	if _, err := s.UpsertByKey(ctx, "routes", "paths", store.Row{"paths": []any{"/"}}); !errors.Is(err, store.ErrInvalidArgument) {
		t.Fatalf("upsert by non-unique field: want ErrInvalidArgument, got %v", err)
	}
	if _, err := s.UpsertByKey(ctx, "routes", "name", store.Row{"paths": []any{"/"}}); !errors.Is(err, store.ErrInvalidArgument) {
		t.Fatalf("upsert by key without the key: want ErrInvalidArgument, got %v", err)
	}
}

func testUpdate(t *testing.T, h Harness) {
	s := h.New(t)
	ctx := ctxT(t)
	svc := mustInsert(t, s, "services", Service("u1"))
	id := idOf(svc)
	out, err := s.Update(ctx, "services", id, func(cur store.Row) (store.Row, error) {
		cur["port"] = 9000
		cur["created_at"] = nil // the store keeps the original
		return cur, nil
	})
	if err != nil {
		t.Fatalf("update: %v", err)
	}
	if out["port"] != float64(9000) || out["name"] != "u1" || out["created_at"] != svc["created_at"] {
		t.Fatalf("updated row = %v", out)
	}
	boom := errors.New("boom")
	v0, _ := s.Version(ctx)
	if _, err := s.Update(ctx, "services", id, func(store.Row) (store.Row, error) { return nil, boom }); !errors.Is(err, boom) {
		t.Fatalf("update fn error: want boom, got %v", err)
	}
	if v1, _ := s.Version(ctx); v1 != v0 {
		t.Fatalf("failed update changed the version %d -> %d", v0, v1)
	}
	if _, err := s.Update(ctx, "services", id, func(cur store.Row) (store.Row, error) {
		cur["id"] = uuid.NewString()
		return cur, nil
	}); !errors.Is(err, store.ErrInvalidArgument) {
		t.Fatalf("update changing id: want ErrInvalidArgument, got %v", err)
	}
	if _, err := s.Update(ctx, "services", uuid.NewString(), func(cur store.Row) (store.Row, error) { return cur, nil }); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("update missing: want ErrNotFound, got %v", err)
	}
	got, _ := s.Get(ctx, "services", id)
	if got["port"] != float64(9000) {
		t.Fatalf("failed updates changed the row: %v", got)
	}
}

func testUnique(t *testing.T, h Harness) {
	s := h.New(t)
	ctx := ctxT(t)
	a := mustInsert(t, s, "services", Service("dup"))
	var uv *store.UniqueViolation
	if _, err := s.Insert(ctx, "services", Service("dup")); !errors.As(err, &uv) {
		t.Fatalf("duplicate name: want UniqueViolation, got %v", err)
	}
	if uv.Collection != "services" || uv.ExistingID != idOf(a) || fmt.Sprint(uv.Fields) != "map[name:dup]" {
		t.Fatalf("violation = %+v", uv)
	}
	if want := `UNIQUE violation detected on '{name="dup"}'`; uv.KongMessage() != want {
		t.Fatalf("message %q, want %q", uv.KongMessage(), want)
	}
	// Rows without a name are not constrained.
	mustInsert(t, s, "services", Service(""))
	mustInsert(t, s, "services", Service(""))

	alice := mustInsert(t, s, "consumers", store.Row{"username": "alice", "custom_id": "c1"})
	if _, err := s.Insert(ctx, "consumers", store.Row{"username": "alice"}); !errors.As(err, &uv) ||
		uv.KongMessage() != `UNIQUE violation detected on '{username="alice"}'` {
		t.Fatalf("duplicate username: %v", err)
	}
	if _, err := s.Insert(ctx, "consumers", store.Row{"username": "bob", "custom_id": "c1"}); !errors.As(err, &uv) ||
		fmt.Sprint(uv.Fields) != "map[custom_id:c1]" {
		t.Fatalf("duplicate custom_id: %v", err)
	}
	// Renaming onto a taken name fails; renaming frees the old name.
	bob := mustInsert(t, s, "consumers", store.Row{"username": "bob"})
	if _, err := s.Update(ctx, "consumers", idOf(bob), func(cur store.Row) (store.Row, error) {
		cur["username"] = "alice"
		return cur, nil
	}); !errors.As(err, &uv) {
		t.Fatalf("rename onto taken name: want UniqueViolation, got %v", err)
	}
	if _, err := s.Update(ctx, "consumers", idOf(alice), func(cur store.Row) (store.Row, error) {
		cur["username"] = "alice2"
		return cur, nil
	}); err != nil {
		t.Fatalf("rename: %v", err)
	}
	mustInsert(t, s, "consumers", store.Row{"username": "alice"})
	// Updating a row without changing its unique values is no conflict.
	if _, err := s.Update(ctx, "consumers", idOf(bob), func(cur store.Row) (store.Row, error) { return cur, nil }); err != nil {
		t.Fatalf("no-op update: %v", err)
	}
	// Upsert of another id onto a taken name fails.
	u := store.Row{"id": uuid.NewString(), "username": "bob"}
	if _, err := s.Upsert(ctx, "consumers", u); !errors.As(err, &uv) {
		t.Fatalf("upsert onto taken name: want UniqueViolation, got %v", err)
	}
	// Same name in another collection is fine.
	mustInsert(t, s, "routes", store.Row{"name": "dup"})
	mustInsert(t, s, "upstreams", store.Row{"name": "dup"})
}

func testUniqueCacheKeys(t *testing.T, h Harness) {
	s := h.New(t)
	ctx := ctxT(t)
	var uv *store.UniqueViolation
	u1 := mustInsert(t, s, "upstreams", store.Row{"name": "u1"})
	u2 := mustInsert(t, s, "upstreams", store.Row{"name": "u2"})
	t1 := mustInsert(t, s, "targets", store.Row{"upstream": ref(idOf(u1)), "target": "10.0.0.1:80"})
	mustInsert(t, s, "targets", store.Row{"upstream": ref(idOf(u2)), "target": "10.0.0.1:80"})
	// A bare id string is accepted and stored as {"id": …}.
	t3 := mustInsert(t, s, "targets", store.Row{"upstream": idOf(u1), "target": "10.0.0.2:80"})
	if fmt.Sprint(t3["upstream"]) != fmt.Sprint(ref(idOf(u1))) {
		t.Fatalf("foreign key not normalised: %v", t3["upstream"])
	}
	if _, err := s.Insert(ctx, "targets", store.Row{"upstream": ref(idOf(u1)), "target": "10.0.0.1:80"}); !errors.As(err, &uv) {
		t.Fatalf("duplicate target: want UniqueViolation, got %v", err)
	}
	if want := fmt.Sprintf(`UNIQUE violation detected on '{target="10.0.0.1:80",upstream={id="%s"}}'`, idOf(u1)); uv.KongMessage() != want {
		t.Fatalf("message %q, want %q", uv.KongMessage(), want)
	}
	got, err := s.GetByKey(ctx, "targets", store.Key{"upstream": ref(idOf(u1)), "target": "10.0.0.1:80"})
	if err != nil || idOf(got) != idOf(t1) {
		t.Fatalf("get target by (upstream, target): %v %v", got, err)
	}
	if _, err := s.GetByKey(ctx, "targets", store.Key{"upstream": idOf(u2), "target": "10.0.0.2:80"}); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("target of another upstream: want ErrNotFound, got %v", err)
	}

	// Plugins: unique on (name, route, service, consumer), nulls included.
	svc := mustInsert(t, s, "services", Service("s"))
	rt := mustInsert(t, s, "routes", store.Row{"name": "r", "service": ref(idOf(svc))})
	plugin := func(route, service any) store.Row {
		return store.Row{"name": "key-auth", "route": route, "service": service, "consumer": nil,
			"instance_name": nil, "config": map[string]any{}}
	}
	mustInsert(t, s, "plugins", plugin(nil, nil))
	if _, err := s.Insert(ctx, "plugins", plugin(nil, nil)); !errors.As(err, &uv) {
		t.Fatalf("duplicate global plugin: want UniqueViolation, got %v", err)
	}
	if want := `UNIQUE violation detected on '{consumer=null,name="key-auth",route=null,service=null}'`; uv.KongMessage() != want {
		t.Fatalf("message %q, want %q", uv.KongMessage(), want)
	}
	mustInsert(t, s, "plugins", plugin(ref(idOf(rt)), nil))
	mustInsert(t, s, "plugins", plugin(nil, ref(idOf(svc))))
	if _, err := s.Insert(ctx, "plugins", plugin(ref(idOf(rt)), nil)); !errors.As(err, &uv) {
		t.Fatalf("duplicate route plugin: want UniqueViolation, got %v", err)
	}
	if want := fmt.Sprintf(`UNIQUE violation detected on '{consumer=null,name="key-auth",route={id="%s"},service=null}'`, idOf(rt)); uv.KongMessage() != want {
		t.Fatalf("message %q, want %q", uv.KongMessage(), want)
	}
	if _, err := s.GetByKey(ctx, "plugins", store.Key{"name": "key-auth", "route": idOf(rt), "service": nil, "consumer": nil}); err != nil {
		t.Fatalf("get plugin by cache key: %v", err)
	}
	// instance_name is unique too.
	p := plugin(nil, nil)
	p["name"], p["instance_name"] = "cors", "my-cors"
	mustInsert(t, s, "plugins", p)
	p2 := plugin(ref(idOf(rt)), nil)
	p2["name"], p2["instance_name"] = "cors", "my-cors"
	if _, err := s.Insert(ctx, "plugins", p2); !errors.As(err, &uv) || fmt.Sprint(uv.Fields) != "map[instance_name:my-cors]" {
		t.Fatalf("duplicate instance_name: %v", err)
	}
}

func testForeignKeys(t *testing.T, h Harness) {
	s := h.New(t)
	ctx := ctxT(t)
	missing := uuid.NewString()
	var fk *store.ForeignKeyViolation
	if _, err := s.Insert(ctx, "routes", store.Row{"name": "r", "service": ref(missing)}); !errors.As(err, &fk) {
		t.Fatalf("route to missing service: want ForeignKeyViolation, got %v", err)
	}
	if want := fmt.Sprintf(`the foreign key '{id="%s"}' does not reference an existing 'services' entity.`, missing); fk.KongMessage() != want {
		t.Fatalf("message %q, want %q", fk.KongMessage(), want)
	}
	if fmt.Sprint(fk.KongFields()) != fmt.Sprint(map[string]any{"service": ref(missing)}) {
		t.Fatalf("fields %v", fk.KongFields())
	}
	if _, err := s.GetByKey(ctx, "routes", store.Key{"name": "r"}); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("failed insert left a row: %v", err)
	}
	svc := mustInsert(t, s, "services", Service("s"))
	rt := mustInsert(t, s, "routes", store.Row{"name": "r", "service": ref(idOf(svc))})
	// A route without service is fine (Kong: nullable).
	mustInsert(t, s, "routes", store.Row{"name": "r2", "service": nil})
	// Re-pointing a route at a missing service fails on update too.
	if _, err := s.Update(ctx, "routes", idOf(rt), func(cur store.Row) (store.Row, error) {
		cur["service"] = ref(missing)
		return cur, nil
	}); !errors.As(err, &fk) {
		t.Fatalf("update to missing service: want ForeignKeyViolation, got %v", err)
	}
	// Deleting a referenced service is refused.
	var rb *store.ReferencedBy
	if err := s.Delete(ctx, "services", idOf(svc)); !errors.As(err, &rb) {
		t.Fatalf("delete referenced service: want ReferencedBy, got %v", err)
	}
	if want := "an existing 'routes' entity references this 'services' entity"; rb.KongMessage() != want {
		t.Fatalf("message %q, want %q", rb.KongMessage(), want)
	}
	if rb.KongFields()["@referenced_by"] != "routes" || rb.ReferrerID != idOf(rt) {
		t.Fatalf("referenced by = %+v", rb)
	}
	expectExists(t, s, "services", idOf(svc))
	// Certificates referenced by a service are restricted too.
	cert := mustInsert(t, s, "certificates", store.Row{"cert": "c", "key": "k"})
	svc2 := Service("tls")
	svc2["client_certificate"] = ref(idOf(cert))
	mustInsert(t, s, "services", svc2)
	if err := s.Delete(ctx, "certificates", idOf(cert)); !errors.As(err, &rb) || rb.ReferencedBy != "services" {
		t.Fatalf("delete referenced certificate: want ReferencedBy services, got %v", err)
	}
	// Once the route is gone the service can go.
	if err := s.Delete(ctx, "routes", idOf(rt)); err != nil {
		t.Fatalf("delete route: %v", err)
	}
	if err := s.Delete(ctx, "services", idOf(svc)); err != nil {
		t.Fatalf("delete service: %v", err)
	}
	if _, err := s.Insert(ctx, "routes", store.Row{"service": map[string]any{"name": "s"}}); !errors.Is(err, store.ErrInvalidArgument) {
		t.Fatalf("unresolved foreign key by name: want ErrInvalidArgument, got %v", err)
	}
}

func testCascade(t *testing.T, h Harness) {
	s := h.New(t)
	ctx := ctxT(t)
	svc := mustInsert(t, s, "services", Service("s"))
	rt := mustInsert(t, s, "routes", store.Row{"name": "r", "service": ref(idOf(svc))})
	cons := mustInsert(t, s, "consumers", store.Row{"username": "c"})
	pRoute := mustInsert(t, s, "plugins", store.Row{"name": "p1", "route": ref(idOf(rt))})
	pSvc := mustInsert(t, s, "plugins", store.Row{"name": "p2", "service": ref(idOf(svc))})
	pCons := mustInsert(t, s, "plugins", store.Row{"name": "p3", "consumer": ref(idOf(cons))})
	pBoth := mustInsert(t, s, "plugins", store.Row{"name": "p4", "route": ref(idOf(rt)), "consumer": ref(idOf(cons))})
	pGlobal := mustInsert(t, s, "plugins", store.Row{"name": "p5"})
	cred := mustInsert(t, s, "keyauth_credentials", store.Row{"key": "secret", "consumer": ref(idOf(cons))})

	if err := s.Delete(ctx, "routes", idOf(rt)); err != nil {
		t.Fatalf("delete route: %v", err)
	}
	expectNotFound(t, s, "plugins", idOf(pRoute))
	expectNotFound(t, s, "plugins", idOf(pBoth))
	expectExists(t, s, "plugins", idOf(pSvc))
	expectExists(t, s, "plugins", idOf(pCons))
	// The cascaded plugin's unique key is gone from the index.
	if _, err := s.GetByKey(ctx, "plugins", store.Key{"name": "p4", "route": idOf(rt), "service": nil, "consumer": idOf(cons)}); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("cascaded plugin still indexed: %v", err)
	}

	if err := s.Delete(ctx, "services", idOf(svc)); err != nil {
		t.Fatalf("delete service: %v", err)
	}
	expectNotFound(t, s, "plugins", idOf(pSvc))
	if err := s.Delete(ctx, "consumers", idOf(cons)); err != nil {
		t.Fatalf("delete consumer: %v", err)
	}
	expectNotFound(t, s, "plugins", idOf(pCons))
	expectNotFound(t, s, "keyauth_credentials", idOf(cred))
	expectExists(t, s, "plugins", idOf(pGlobal))
	if _, err := s.GetByKey(ctx, "keyauth_credentials", store.Key{"key": "secret"}); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("cascaded credential still indexed: %v", err)
	}

	// Targets go with their upstream (many of them: chunked deletes).
	up := mustInsert(t, s, "upstreams", store.Row{"name": "u"})
	var targets []store.Row
	colls := map[string][]store.Row{"upstreams": {up}}
	for i := 0; i < 1200; i++ {
		targets = append(targets, store.Row{"id": uuid.NewString(), "upstream": ref(idOf(up)), "target": fmt.Sprintf("10.0.%d.%d:80", i/250, i%250)})
	}
	colls["targets"] = targets
	if _, err := s.ReplaceAll(ctx, colls); err != nil {
		t.Fatalf("replace: %v", err)
	}
	if err := s.Delete(ctx, "upstreams", idOf(up)); err != nil {
		t.Fatalf("delete upstream: %v", err)
	}
	page, err := s.List(ctx, "targets", store.ListOptions{})
	if err != nil || len(page.Rows) != 0 {
		t.Fatalf("targets left after deleting their upstream: %d %v", len(page.Rows), err)
	}

	// SNIs go with their certificate.
	cert := mustInsert(t, s, "certificates", store.Row{"cert": "c", "key": "k"})
	sni := mustInsert(t, s, "snis", store.Row{"name": "a.test", "certificate": ref(idOf(cert))})
	if err := s.Delete(ctx, "certificates", idOf(cert)); err != nil {
		t.Fatalf("delete certificate: %v", err)
	}
	expectNotFound(t, s, "snis", idOf(sni))
	mustInsert(t, s, "snis", store.Row{"name": "a.test", "certificate": ref(idOf(mustInsert(t, s, "certificates", store.Row{"cert": "c"})))})
}

func insertServices(t *testing.T, s store.Store, n int, tags func(i int) []string) map[string]bool {
	t.Helper()
	ids := map[string]bool{}
	for i := 0; i < n; i++ {
		var tg []string
		if tags != nil {
			tg = tags(i)
		}
		r := mustInsert(t, s, "services", Service(fmt.Sprintf("svc-%03d", i), tg...))
		ids[idOf(r)] = true
	}
	return ids
}

// listAll follows NextOffset like decK does and checks page sizes and order.
func listAll(t *testing.T, s store.Store, coll string, opts store.ListOptions) []store.Row {
	t.Helper()
	var all []store.Row
	size := opts.Size
	if size == 0 {
		size = store.DefaultPageSize
	}
	for pages := 0; ; pages++ {
		if pages > 1000 {
			t.Fatal("pagination does not end")
		}
		page, err := s.List(ctxT(t), coll, opts)
		if err != nil {
			t.Fatalf("list %s %+v: %v", coll, opts, err)
		}
		if len(page.Rows) > size {
			t.Fatalf("page of %d rows for size %d", len(page.Rows), size)
		}
		if page.NextOffset != "" && len(page.Rows) != size {
			t.Fatalf("non-last page has %d rows, want %d", len(page.Rows), size)
		}
		all = append(all, page.Rows...)
		if page.NextOffset == "" {
			break
		}
		opts.Offset = page.NextOffset
	}
	for i := 1; i < len(all); i++ {
		if idOf(all[i-1]) >= idOf(all[i]) {
			t.Fatalf("rows not in id order at %d: %s >= %s", i, idOf(all[i-1]), idOf(all[i]))
		}
	}
	return all
}

func testPagination(t *testing.T, h Harness) {
	s := h.New(t)
	ctx := ctxT(t)
	empty, err := s.List(ctx, "services", store.ListOptions{})
	if err != nil || len(empty.Rows) != 0 || empty.NextOffset != "" {
		t.Fatalf("empty list: %+v %v", empty, err)
	}
	ids := insertServices(t, s, 25, nil)
	for _, size := range []int{1, 5, 10, 25, 100} {
		all := listAll(t, s, "services", store.ListOptions{Size: size})
		if len(all) != 25 {
			t.Fatalf("size %d: listed %d rows, want 25", size, len(all))
		}
		for _, r := range all {
			if !ids[idOf(r)] {
				t.Fatalf("size %d: unexpected row %v", size, r)
			}
		}
	}
	// Exactly full last page: no offset on it.
	p1, err := s.List(ctx, "services", store.ListOptions{Size: 20})
	if err != nil || len(p1.Rows) != 20 || p1.NextOffset == "" {
		t.Fatalf("first page: %d rows offset %q %v", len(p1.Rows), p1.NextOffset, err)
	}
	p2, err := s.List(ctx, "services", store.ListOptions{Size: 5, Offset: p1.NextOffset})
	if err != nil || len(p2.Rows) != 5 || p2.NextOffset != "" {
		t.Fatalf("exactly full last page: %d rows offset %q %v", len(p2.Rows), p2.NextOffset, err)
	}
	// A deleted row does not break the listing of the next page.
	if err := s.Delete(ctx, "services", idOf(p1.Rows[19])); err != nil {
		t.Fatal(err)
	}
	p2b, err := s.List(ctx, "services", store.ListOptions{Size: 5, Offset: p1.NextOffset})
	if err != nil || len(p2b.Rows) != 5 {
		t.Fatalf("page after deleting the offset row: %d %v", len(p2b.Rows), err)
	}

	var bad *store.InvalidOffsetError
	if _, err := s.List(ctx, "services", store.ListOptions{Offset: "%%%"}); !errors.As(err, &bad) {
		t.Fatalf("bad offset: want InvalidOffsetError, got %v", err)
	}
	if want := "'%%%' is not a valid offset: bad base64 encoding"; bad.KongMessage() != want {
		t.Fatalf("message %q, want %q", bad.KongMessage(), want)
	}
	if _, err := s.List(ctx, "services", store.ListOptions{Offset: "aGVsbG8="}); !errors.As(err, &bad) {
		t.Fatalf("undecodable offset: want InvalidOffsetError, got %v", err)
	}
	for _, size := range []int{-1, store.MaxPageSize + 1} {
		if _, err := s.List(ctx, "services", store.ListOptions{Size: size}); !errors.Is(err, store.ErrInvalidArgument) {
			t.Fatalf("size %d: want ErrInvalidArgument, got %v", size, err)
		}
	}
	if p, err := s.List(ctx, "services", store.ListOptions{Size: store.MaxPageSize}); err != nil || len(p.Rows) != 24 {
		t.Fatalf("max size: %d %v", len(p.Rows), err)
	}
}

func testListFilter(t *testing.T, h Harness) {
	s := h.New(t)
	ctx := ctxT(t)
	s1 := mustInsert(t, s, "services", Service("s1"))
	s2 := mustInsert(t, s, "services", Service("s2"))
	want := map[string]bool{}
	for i := 0; i < 7; i++ {
		r := mustInsert(t, s, "routes", store.Row{"name": fmt.Sprintf("a%d", i), "service": ref(idOf(s1)), "tags": []any{"x"}})
		want[idOf(r)] = true
		mustInsert(t, s, "routes", store.Row{"name": fmt.Sprintf("b%d", i), "service": ref(idOf(s2)), "tags": []any{"x"}})
	}
	mustInsert(t, s, "routes", store.Row{"name": "orphan"})
	got := listAll(t, s, "routes", store.ListOptions{Size: 3, Filter: &store.ForeignFilter{Field: "service", ID: idOf(s1)}})
	if len(got) != 7 {
		t.Fatalf("routes of s1: %d, want 7", len(got))
	}
	for _, r := range got {
		if !want[idOf(r)] {
			t.Fatalf("route %v does not belong to s1", r["name"])
		}
	}
	got = listAll(t, s, "routes", store.ListOptions{Size: 3, Tags: []string{"x"}, Filter: &store.ForeignFilter{Field: "service", ID: idOf(s2)}})
	if len(got) != 7 {
		t.Fatalf("tagged routes of s2: %d, want 7", len(got))
	}
	if _, err := s.List(ctx, "routes", store.ListOptions{Filter: &store.ForeignFilter{Field: "name", ID: "x"}}); !errors.Is(err, store.ErrInvalidArgument) {
		t.Fatalf("filter on a non-foreign field: want ErrInvalidArgument, got %v", err)
	}
}

func names(rows []store.Row) string {
	var out []string
	for _, r := range rows {
		out = append(out, fmt.Sprint(r["name"]))
	}
	sort.Strings(out)
	return strings.Join(out, ",")
}

func testTags(t *testing.T, h Harness) {
	s := h.New(t)
	for _, c := range []struct {
		name string
		tags []string
	}{
		{"a", []string{"red"}},
		{"b", []string{"red", "blue"}},
		{"c", []string{"blue"}},
		{"d", []string{"green", "red", "blue"}},
		{"e", nil},
		{"f", []string{"red", "red"}},
	} {
		mustInsert(t, s, "services", Service(c.name, c.tags...))
	}
	for _, c := range []struct {
		tags []string
		mode store.TagMatch
		want string
	}{
		{[]string{"red"}, store.MatchAll, "a,b,d,f"},
		{[]string{"red", "blue"}, store.MatchAll, "b,d"},
		{[]string{"red", "blue", "green"}, store.MatchAll, "d"},
		{[]string{"red", "blue"}, store.MatchAny, "a,b,c,d,f"},
		{[]string{"green", "nope"}, store.MatchAny, "d"},
		{[]string{"nope"}, store.MatchAll, ""},
	} {
		got := listAll(t, s, "services", store.ListOptions{Size: 1, Tags: c.tags, TagMatch: c.mode})
		if names(got) != c.want {
			t.Errorf("tags %v mode %d: got %s, want %s", c.tags, c.mode, names(got), c.want)
		}
	}
	// Tags are re-indexed on update.
	ctx := ctxT(t)
	a, _ := s.GetByKey(ctx, "services", store.Key{"name": "a"})
	if _, err := s.Update(ctx, "services", idOf(a), func(cur store.Row) (store.Row, error) {
		cur["tags"] = []any{"blue"}
		return cur, nil
	}); err != nil {
		t.Fatal(err)
	}
	if got := listAll(t, s, "services", store.ListOptions{Tags: []string{"red"}}); names(got) != "b,d,f" {
		t.Errorf("after retagging: red = %s", names(got))
	}
}

func testListTags(t *testing.T, h Harness) {
	s := h.New(t)
	ctx := ctxT(t)
	mustInsert(t, s, "services", Service("s1", "a", "b"))
	mustInsert(t, s, "services", Service("s2", "b"))
	mustInsert(t, s, "consumers", store.Row{"username": "c", "tags": []any{"b", "c"}})
	var all []store.TagRow
	opts := store.TagListOptions{Size: 2}
	for i := 0; ; i++ {
		p, err := s.ListTags(ctx, opts)
		if err != nil {
			t.Fatalf("list tags: %v", err)
		}
		all = append(all, p.Rows...)
		if p.NextOffset == "" {
			break
		}
		if i > 10 {
			t.Fatal("tag pagination does not end")
		}
		opts.Offset = p.NextOffset
	}
	if len(all) != 5 {
		t.Fatalf("tags: %v", all)
	}
	count := map[string]int{}
	for _, r := range all {
		count[r.EntityName+"/"+r.Tag]++
		if r.EntityID == "" {
			t.Fatalf("tag row without id: %+v", r)
		}
	}
	if count["services/b"] != 2 || count["consumers/c"] != 1 || count["services/a"] != 1 {
		t.Fatalf("tag rows: %v", count)
	}
	p, err := s.ListTags(ctx, store.TagListOptions{Tag: "b"})
	if err != nil || len(p.Rows) != 3 || p.NextOffset != "" {
		t.Fatalf("tag b: %v %v", p, err)
	}
	if _, err := s.ListTags(ctx, store.TagListOptions{Offset: "!"}); err == nil {
		t.Fatal("bad tags offset accepted")
	}
}

// sampleConfig is a small complete configuration with every relation.
func sampleConfig() map[string][]store.Row {
	svc, rt, up, cons, cert := uuid.NewString(), uuid.NewString(), uuid.NewString(), uuid.NewString(), uuid.NewString()
	return map[string][]store.Row{
		"services":            {{"id": svc, "name": "svc", "host": "h", "tags": []any{"imported"}}},
		"routes":              {{"id": rt, "name": "rt", "service": svc, "paths": []any{"/"}}},
		"upstreams":           {{"id": up, "name": "up"}},
		"targets":             {{"id": uuid.NewString(), "upstream": ref(up), "target": "a:80", "created_at": 1700000000.123}},
		"consumers":           {{"id": cons, "username": "alice", "created_at": 1700000000}},
		"plugins":             {{"id": uuid.NewString(), "name": "key-auth", "route": ref(rt)}},
		"certificates":        {{"id": cert, "cert": "c", "key": "k"}},
		"snis":                {{"id": uuid.NewString(), "name": "a.test", "certificate": ref(cert)}},
		"keyauth_credentials": {{"id": uuid.NewString(), "key": "k1", "consumer": ref(cons)}},
		"vaults":              {{"id": uuid.NewString(), "name": "env", "prefix": "env"}},
	}
}

func testReplaceAll(t *testing.T, h Harness) {
	s := h.New(t)
	ctx := ctxT(t)
	old := mustInsert(t, s, "services", Service("old"))
	mustInsert(t, s, "consumers", store.Row{"username": "old"})
	cfg := sampleConfig()
	v0, _ := s.Version(ctx)
	v, err := s.ReplaceAll(ctx, cfg)
	if err != nil {
		t.Fatalf("replace: %v", err)
	}
	if cur, _ := s.Version(ctx); v != v0+1 || cur != v {
		t.Fatalf("version after replace: returned %d current %d, before %d", v, cur, v0)
	}
	expectNotFound(t, s, "services", idOf(old))
	snap, err := s.Export(ctx)
	if err != nil {
		t.Fatalf("export: %v", err)
	}
	for coll, rows := range cfg {
		if len(snap.Collections[coll]) != len(rows) {
			t.Fatalf("%s: %d rows after replace, want %d", coll, len(snap.Collections[coll]), len(rows))
		}
	}
	// Indexes were built: keys, foreign keys and tags work.
	r, err := s.GetByKey(ctx, "routes", store.Key{"name": "rt"})
	if err != nil {
		t.Fatalf("route by name after replace: %v", err)
	}
	if fmt.Sprint(r["service"]) != fmt.Sprint(ref(idOf(cfg["services"][0]))) {
		t.Fatalf("route service not normalised: %v", r["service"])
	}
	if r["created_at"] == nil {
		t.Fatalf("missing created_at not filled: %v", r)
	}
	c, _ := s.GetByKey(ctx, "consumers", store.Key{"username": "alice"})
	if c["created_at"] != float64(1700000000) {
		t.Fatalf("given created_at not kept: %v", c["created_at"])
	}
	if got := listAll(t, s, "services", store.ListOptions{Tags: []string{"imported"}}); len(got) != 1 {
		t.Fatalf("tags not indexed after replace: %d", len(got))
	}
	var rb *store.ReferencedBy
	if err := s.Delete(ctx, "services", idOf(cfg["services"][0])); !errors.As(err, &rb) {
		t.Fatalf("references not indexed after replace: %v", err)
	}
	if err := s.Delete(ctx, "routes", idOf(cfg["routes"][0])); err != nil {
		t.Fatal(err)
	}
	expectNotFound(t, s, "plugins", idOf(cfg["plugins"][0]))
	// Replacing with nothing empties the store.
	if _, err := s.ReplaceAll(ctx, nil); err != nil {
		t.Fatalf("replace with nothing: %v", err)
	}
	snap, _ = s.Export(ctx)
	if len(snap.Collections) != 0 {
		t.Fatalf("store not empty: %v", snap.Collections)
	}
}

func testReplaceAllAtomic(t *testing.T, h Harness) {
	s := h.New(t)
	ctx := ctxT(t)
	keep := mustInsert(t, s, "services", Service("keep"))
	v0, _ := s.Version(ctx)
	id := uuid.NewString()
	for name, c := range map[string]struct {
		colls map[string][]store.Row
		check func(error) bool
	}{
		"duplicate name": {map[string][]store.Row{"services": {Service("x"), Service("x")}},
			func(err error) bool { var e *store.UniqueViolation; return errors.As(err, &e) }},
		"duplicate id": {map[string][]store.Row{"services": {{"id": id, "name": "a"}, {"id": id, "name": "b"}}},
			func(err error) bool { var e *store.PrimaryKeyViolation; return errors.As(err, &e) }},
		"missing service": {map[string][]store.Row{"routes": {{"name": "r", "service": ref(uuid.NewString())}}},
			func(err error) bool { var e *store.ForeignKeyViolation; return errors.As(err, &e) }},
		"reference to a row being replaced away": {map[string][]store.Row{"routes": {{"name": "r", "service": ref(idOf(keep))}}},
			func(err error) bool { var e *store.ForeignKeyViolation; return errors.As(err, &e) }},
		"bad collection": {map[string][]store.Row{"Bad": {{}}},
			func(err error) bool { return errors.Is(err, store.ErrInvalidArgument) }},
		"bad foreign key": {map[string][]store.Row{"services": {Service("a")}, "routes": {{"service": 12}}},
			func(err error) bool { return errors.Is(err, store.ErrInvalidArgument) }},
	} {
		_, err := s.ReplaceAll(ctx, c.colls)
		if err == nil || !c.check(err) {
			t.Errorf("%s: unexpected error %v", name, err)
		}
		if !strings.HasPrefix(fmt.Sprint(err), "replace") {
			t.Errorf("%s: error does not say where: %v", name, err)
		}
	}
	expectExists(t, s, "services", idOf(keep))
	snap, err := s.Export(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if snap.Version != v0 || len(snap.Collections) != 1 || len(snap.Collections["services"]) != 1 {
		t.Fatalf("failed replaces changed the store: version %d (was %d), %v", snap.Version, v0, snap.Collections)
	}
}

func testVersion(t *testing.T, h Harness) {
	s := h.New(t)
	ctx := ctxT(t)
	v, err := s.Version(ctx)
	if err != nil || v != 0 {
		t.Fatalf("new store version = %d, %v", v, err)
	}
	step := func(what string, want uint64, err error) {
		t.Helper()
		got, verr := s.Version(ctx)
		if verr != nil || got != want {
			t.Fatalf("after %s (err %v): version %d, want %d (%v)", what, err, got, want, verr)
		}
	}
	svc, err := s.Insert(ctx, "services", Service("v"))
	step("insert", 1, err)
	_, err = s.Insert(ctx, "services", Service("v"))
	step("failed insert", 1, err)
	_, err = s.Update(ctx, "services", idOf(svc), func(cur store.Row) (store.Row, error) { return cur, nil })
	step("update", 2, err)
	err = s.Delete(ctx, "services", uuid.NewString())
	step("delete of a missing row", 2, err)
	err = s.Delete(ctx, "services", idOf(svc))
	step("delete", 3, err)
	_, err = s.ReplaceAll(ctx, map[string][]store.Row{"services": {Service("z")}})
	step("replace", 4, err)
}

func testExport(t *testing.T, h Harness) {
	s := h.New(t)
	ctx := ctxT(t)
	snap, err := s.Export(ctx)
	if err != nil || snap.Version != 0 || len(snap.Collections) != 0 {
		t.Fatalf("empty export: %+v %v", snap, err)
	}
	insertServices(t, s, 30, nil)
	mustInsert(t, s, "consumers", store.Row{"username": "x"})
	snap, err = s.Export(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if snap.Version != 31 || len(snap.Collections["services"]) != 30 || len(snap.Collections["consumers"]) != 1 {
		t.Fatalf("export: version %d, %d services, %d consumers", snap.Version, len(snap.Collections["services"]), len(snap.Collections["consumers"]))
	}
	rows := snap.Collections["services"]
	for i := 1; i < len(rows); i++ {
		if idOf(rows[i-1]) >= idOf(rows[i]) {
			t.Fatal("export rows not ordered by id")
		}
	}
	// Exports running during writes always see a version matching their
	// content: n services at version n+1 (the consumer came last before).
	done := make(chan struct{})
	var werr error
	go func() {
		defer close(done)
		for i := 0; i < 20; i++ {
			if _, err := s.Insert(context.Background(), "services", Service(fmt.Sprintf("more-%d", i))); err != nil {
				werr = err
				return
			}
		}
	}()
	for {
		snap, err := s.Export(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if got := uint64(len(snap.Collections["services"])) + 1; got != snap.Version {
			t.Fatalf("inconsistent export: %d services at version %d", got-1, snap.Version)
		}
		select {
		case <-done:
			if werr != nil {
				t.Fatal(werr)
			}
			return
		default:
		}
	}
}

// waitVersion reads ch until it yields a version ≥ want.
func waitVersion(t *testing.T, ch <-chan uint64, want uint64) uint64 {
	t.Helper()
	deadline := time.After(15 * time.Second)
	for {
		select {
		case v, ok := <-ch:
			if !ok {
				t.Fatalf("watch channel closed while waiting for version %d", want)
			}
			if v >= want {
				return v
			}
		case <-deadline:
			t.Fatalf("no version ≥ %d within 15s", want)
		}
	}
}

func testWatch(t *testing.T, h Harness) {
	s := h.New(t)
	ctx, cancel := context.WithCancel(ctxT(t))
	ch := s.Watch(ctx)
	if v := waitVersion(t, ch, 0); v != 0 {
		t.Fatalf("first watched version %d, want 0", v)
	}
	mustInsert(t, s, "services", Service("w1"))
	if v := waitVersion(t, ch, 1); v != 1 {
		t.Fatalf("watched %d, want 1", v)
	}
	// A slow reader gets the latest version, not a backlog.
	for i := 0; i < 5; i++ {
		mustInsert(t, s, "services", Service(fmt.Sprintf("w%d", i+2)))
	}
	if v := waitVersion(t, ch, 6); v != 6 {
		t.Fatalf("watched %d, want 6", v)
	}
	select {
	case v := <-ch:
		t.Fatalf("unexpected extra version %d", v)
	default:
	}
	// A failed write notifies nothing; a new watcher starts at the current version.
	_, _ = s.Insert(ctxT(t), "services", Service("w1"))
	if v := waitVersion(t, s.Watch(ctx), 6); v != 6 {
		t.Fatalf("new watcher got %d, want 6", v)
	}
	cancel()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case _, ok := <-ch:
			if !ok {
				return
			}
		case <-deadline:
			t.Fatal("watch channel not closed after its context ended")
		}
	}
}

func testWatchPeer(t *testing.T, h Harness) {
	a := h.New(t)
	b := h.Peer(t, a)
	ch := b.Watch(ctxT(t))
	waitVersion(t, ch, 0)
	mustInsert(t, a, "services", Service("from-a"))
	if v := waitVersion(t, ch, 1); v != 1 {
		t.Fatalf("peer watched %d, want 1", v)
	}
	if _, err := b.GetByKey(ctxT(t), "services", store.Key{"name": "from-a"}); err != nil {
		t.Fatalf("peer does not see the row: %v", err)
	}
	// And the other way round.
	cha := a.Watch(ctxT(t))
	mustInsert(t, b, "services", Service("from-b"))
	if v := waitVersion(t, cha, 2); v != 2 {
		t.Fatalf("watched %d, want 2", v)
	}
}

// testConcurrentWriters: 50 writers doing read-modify-write on one row and
// inserting rows; every update and insert must survive.
func testConcurrentWriters(t *testing.T, h Harness) {
	s := h.New(t)
	concurrentWriters(t, []store.Store{s})
}

func testConcurrentPeers(t *testing.T, h Harness) {
	a := h.New(t)
	b := h.Peer(t, a)
	concurrentWriters(t, []store.Store{a, b})
}

func concurrentWriters(t *testing.T, stores []store.Store) {
	const writers, rounds = 50, 4
	ctx := ctxT(t)
	s := stores[0]
	counter := mustInsert(t, s, "consumers", store.Row{"username": "counter", "custom_id": "0"})
	v0, _ := s.Version(ctx)
	var wg sync.WaitGroup
	errs := make(chan error, writers*rounds*2)
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			st := stores[w%len(stores)]
			for r := 0; r < rounds; r++ {
				if _, err := st.Update(ctx, "consumers", idOf(counter), func(cur store.Row) (store.Row, error) {
					var n int
					if _, err := fmt.Sscan(fmt.Sprint(cur["custom_id"]), &n); err != nil {
						return nil, err
					}
					cur["custom_id"] = fmt.Sprint(n + 1)
					return cur, nil
				}); err != nil {
					errs <- fmt.Errorf("writer %d update %d: %w", w, r, err)
				}
				if _, err := st.Insert(ctx, "services", Service(fmt.Sprintf("w%d-%d", w, r))); err != nil {
					errs <- fmt.Errorf("writer %d insert %d: %w", w, r, err)
				}
			}
		}(w)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		return
	}
	got, err := s.Get(ctx, "consumers", idOf(counter))
	if err != nil {
		t.Fatal(err)
	}
	if got["custom_id"] != fmt.Sprint(writers*rounds) {
		t.Fatalf("counter = %v, want %d: updates were lost", got["custom_id"], writers*rounds)
	}
	all := listAll(t, s, "services", store.ListOptions{Size: store.MaxPageSize})
	if len(all) != writers*rounds {
		t.Fatalf("%d services, want %d", len(all), writers*rounds)
	}
	if v, _ := s.Version(ctx); v != v0+writers*rounds*2 {
		t.Fatalf("version %d, want %d", v, v0+writers*rounds*2)
	}
}

func testClosed(t *testing.T, h Harness) {
	s := h.New(t)
	ch := s.Watch(context.Background())
	if err := s.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
	if _, err := s.Get(context.Background(), "services", "x"); !errors.Is(err, store.ErrClosed) {
		t.Fatalf("get after close: want ErrClosed, got %v", err)
	}
	if _, err := s.Insert(context.Background(), "services", Service("x")); !errors.Is(err, store.ErrClosed) {
		t.Fatalf("insert after close: want ErrClosed, got %v", err)
	}
	for range ch { // Close must close watch channels: this loop ends
	}
	if _, ok := <-s.Watch(context.Background()); ok {
		t.Fatal("watch after close returned an open channel")
	}
}
