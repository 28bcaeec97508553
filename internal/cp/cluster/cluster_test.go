package cluster

import (
	"context"
	"crypto/tls"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/kongfb/kongfb/internal/cp/store"
	"github.com/kongfb/kongfb/internal/cp/store/storetest"
	wire "github.com/kongfb/kongfb/pkg/cluster"
)

func TestInitialConfigAndChanges(t *testing.T) {
	st := storetest.NewSQLite(t)
	svc := addService(t, st, "orders")
	cp := startCP(t, st, sharedTLS(t), nil)

	dp := mustDialDP(t, cp.addr, cp.cert, dpOpts{})
	first := dp.next(t)
	if want := expectedHash(t, st); first.msg.ConfigHash != want {
		t.Fatalf("initial config hash %s, store hashes to %s", first.msg.ConfigHash, want)
	}
	if got := serviceNames(first.cfg); got != "orders" {
		t.Fatalf("initial config services = %q", got)
	}
	if len(first.msg.FilledHashes()) != len(wire.HashGroups) {
		t.Errorf("hashes: %v", first.msg.Hashes)
	}

	// Each change reaches the DP, as the full configuration.
	addRoute(t, st, svc["id"].(string), "orders-route", "/orders")
	r, _ := dp.waitHash(t, expectedHash(t, st))
	if len(r.cfg.Routes) != 1 || len(r.cfg.Services) != 1 {
		t.Fatalf("after adding a route: %d services, %d routes", len(r.cfg.Services), len(r.cfg.Routes))
	}
	addService(t, st, "users")
	r, _ = dp.waitHash(t, expectedHash(t, st))
	if got := serviceNames(r.cfg); got != "orders,users" && got != "users,orders" {
		t.Fatalf("after adding a service: %q", got)
	}

	// A disabled service is not sent (nor its routes), as in Kong's export.
	if _, err := st.Update(ctxT(t), "services", svc["id"].(string), func(cur store.Row) (store.Row, error) {
		cur["enabled"] = false
		return cur, nil
	}); err != nil {
		t.Fatal(err)
	}
	r, _ = dp.waitHash(t, expectedHash(t, st))
	if got := serviceNames(r.cfg); got != "users" || len(r.cfg.Routes) != 0 {
		t.Fatalf("disabled service still pushed: services %q, %d routes", got, len(r.cfg.Routes))
	}

	// A second DP connecting later gets the current config at once.
	dp2 := mustDialDP(t, cp.addr, cp.cert, dpOpts{})
	if got := dp2.next(t); got.msg.ConfigHash != r.msg.ConfigHash {
		t.Fatalf("late DP got %s, want %s", got.msg.ConfigHash, r.msg.ConfigHash)
	}

	// A write that does not change the exported config is not re-sent.
	exported := cp.Exported()
	if _, err := st.Update(ctxT(t), "services", svc["id"].(string), func(cur store.Row) (store.Row, error) {
		return cur, nil
	}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-exported:
	case <-time.After(15 * time.Second):
		t.Fatal("no export after a write")
	}
	// updated_at changes, so Kong's hash changes too; whatever it is, both
	// DPs end at the store's hash.
	want := expectedHash(t, st)
	if want != r.msg.ConfigHash {
		dp.waitHash(t, want)
		dp2.waitHash(t, want)
	}
}

// Many rapid writes: every DP converges to the final configuration.
func TestRapidWritesConverge(t *testing.T) {
	st := storetest.NewSQLite(t)
	cp := startCP(t, st, sharedTLS(t), nil)
	dps := []*testDP{mustDialDP(t, cp.addr, cp.cert, dpOpts{}), mustDialDP(t, cp.addr, cp.cert, dpOpts{}), mustDialDP(t, cp.addr, cp.cert, dpOpts{})}
	for _, d := range dps {
		d.next(t)
	}
	const writes = 60
	var wg sync.WaitGroup
	for w := 0; w < 3; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < writes/3; i++ {
				addService(t, st, "svc-"+string(rune('a'+w))+"-"+itoa(i))
			}
		}()
	}
	wg.Wait()
	final := expectedHash(t, st)
	for i, d := range dps {
		r, n := d.waitHash(t, final)
		if len(r.cfg.Services) != writes {
			t.Fatalf("DP %d: %d services, want %d", i, len(r.cfg.Services), writes)
		}
		t.Logf("DP %d converged after %d pushes for %d writes", i, n, writes)
	}
}

func itoa(i int) string {
	const d = "0123456789"
	if i < 10 {
		return d[i : i+1]
	}
	return itoa(i/10) + d[i%10:i%10+1]
}

// Changes that arrive while an export is in flight are coalesced into ONE
// follow-up export of the newest state: no trailing throttle, no push per
// write.
func TestCoalescingWhileExportInFlight(t *testing.T) {
	inner := storetest.NewSQLite(t)
	st := newFaultyStore(inner)
	cp := startCP(t, st, sharedTLS(t), nil)
	dp := mustDialDP(t, cp.addr, cp.cert, dpOpts{})
	dp.next(t) // the initial (empty) config
	base := cp.Stats()

	gate := make(chan struct{})
	st.gate.Store(&gate)
	addService(t, inner, "first")
	<-st.entered // the export of "first" is in flight (read, not yet pushed)
	st.gate.Store(nil)
	const burst = 20
	for i := 0; i < burst; i++ {
		addService(t, inner, "burst-"+itoa(i))
	}
	final := expectedHash(t, inner)
	close(gate)

	r1 := dp.next(t)
	if got := serviceNames(r1.cfg); got != "first" {
		t.Fatalf("in-flight export pushed %q, want just first", got)
	}
	r2 := dp.next(t)
	if r2.msg.ConfigHash != final || len(r2.cfg.Services) != burst+1 {
		t.Fatalf("follow-up push: hash %s (%d services), want %s (%d)", r2.msg.ConfigHash, len(r2.cfg.Services), final, burst+1)
	}
	got := cp.Stats()
	if n := got.Exports - base.Exports; n != 2 {
		t.Errorf("%d exports for %d writes, want 2 (the in-flight one and one coalesced follow-up)", n, burst+1)
	}
	if n := got.Pushes - base.Pushes; n != 2 {
		t.Errorf("%d pushes for %d writes, want 2", n, burst+1)
	}
	dp.none(t)
}

// Kong/kong#12861: a CP that cannot read its store must not push an empty
// (or partial) config. The last good payload stays; the export is retried.
func TestStoreFailureKeepsLastGoodPayload(t *testing.T) {
	inner := storetest.NewSQLite(t)
	st := newFaultyStore(inner)
	addService(t, inner, "keep-me")
	cp := startCP(t, st, sharedTLS(t), nil)
	dp := mustDialDP(t, cp.addr, cp.cert, dpOpts{})
	good := dp.next(t)
	if serviceNames(good.cfg) != "keep-me" {
		t.Fatalf("initial: %q", serviceNames(good.cfg))
	}

	st.fail.Store(true)
	addService(t, inner, "added-while-broken")
	base := cp.Stats().ExportErrors
	// The change triggers an export, which fails; the loop retries on its
	// own (no further change needed).
	waitFor(t, "failed export and a retry", func() bool { return cp.Stats().ExportErrors >= base+3 })
	dp.none(t)
	if cur := cp.Current(); cur == nil || cur.Hash != good.msg.ConfigHash {
		t.Fatalf("cached payload changed during the failure")
	}
	if !strings.Contains(cp.log.String(), "level=ERROR") || !strings.Contains(cp.log.String(), "unable to export config from database") {
		t.Errorf("no ERROR log for the failed export:\n%s", cp.log.String())
	}
	// A DP connecting now gets the last good payload at once.
	late := mustDialDP(t, cp.addr, cp.cert, dpOpts{})
	if r := late.next(t); r.msg.ConfigHash != good.msg.ConfigHash {
		t.Fatalf("late DP during failure got %s, want the last good %s", r.msg.ConfigHash, good.msg.ConfigHash)
	}

	// The store recovers: the retry pushes the current config, no new
	// write needed.
	st.fail.Store(false)
	want := expectedHash(t, inner)
	r, _ := dp.waitHash(t, want)
	if got := serviceNames(r.cfg); !strings.Contains(got, "added-while-broken") || !strings.Contains(got, "keep-me") {
		t.Fatalf("after recovery: %q", got)
	}
	late.waitHash(t, want)
}

// A CP whose store fails from the start pushes nothing; DPs that connect
// get the first good config once the store answers.
func TestStoreFailingAtStart(t *testing.T) {
	inner := storetest.NewSQLite(t)
	addService(t, inner, "svc")
	st := newFaultyStore(inner)
	st.fail.Store(true)
	cp := startCP(t, st, sharedTLS(t), nil)
	waitFor(t, "failed initial export", func() bool { return cp.Stats().ExportErrors >= 1 })
	dp := mustDialDP(t, cp.addr, cp.cert, dpOpts{})
	waitFor(t, "the log about the DP waiting for a config", func() bool {
		return strings.Contains(cp.log.String(), "unable to send initial configuration to data plane")
	})
	base := cp.Stats().ExportErrors
	waitFor(t, "retries while the DP waits", func() bool { return cp.Stats().ExportErrors >= base+2 })
	dp.none(t)
	if cp.Current() != nil {
		t.Fatal("a payload exists although every export failed")
	}
	st.fail.Store(false)
	if r := dp.next(t); serviceNames(r.cfg) != "svc" {
		t.Fatalf("first config: %q", serviceNames(r.cfg))
	}
}

// A row the config model rejects (here a service without host, written
// behind the Admin API's back) makes the whole export fail: nothing is
// pushed rather than a config missing that row.
func TestInvalidStoredRowIsNotPushed(t *testing.T) {
	st := storetest.NewSQLite(t)
	addService(t, st, "good")
	cp := startCP(t, st, sharedTLS(t), nil)
	dp := mustDialDP(t, cp.addr, cp.cert, dpOpts{})
	good := dp.next(t)
	goodVersion := cp.Current().Version

	bad, err := st.Insert(ctxT(t), "services", store.Row{"name": "broken", "host": nil, "port": 80, "protocol": "http"})
	if err != nil {
		t.Fatal(err)
	}
	base := cp.Stats().ExportErrors
	waitFor(t, "the failed export", func() bool { return cp.Stats().ExportErrors > base })
	dp.none(t)
	if cur := cp.Current(); cur.Hash != good.msg.ConfigHash {
		t.Fatal("cached payload replaced by a failed export")
	}
	if !strings.Contains(cp.log.String(), "does not convert to an export") {
		t.Errorf("log does not say why:\n%s", cp.log.String())
	}
	if err := st.Delete(ctxT(t), "services", bad["id"].(string)); err != nil {
		t.Fatal(err)
	}
	// Deleting the bad row brings the store back to the pushed state (the
	// hash is the same): nothing new to send, but exports succeed again.
	waitFor(t, "a good export", func() bool { return cp.Current().Version > goodVersion })
	addService(t, st, "after")
	dp.waitHash(t, expectedHash(t, st))
}

func TestVersionIncompatibleRefused(t *testing.T) {
	st := storetest.NewSQLite(t)
	cp := startCP(t, st, sharedTLS(t), nil)
	for _, tc := range []struct{ version, msg string }{
		{"4.0.0", "data plane version 4.0.0 is incompatible with control plane version 3.9.1 (3.x.y are accepted)"},
		{"3.10.0", "data plane version 3.10.0 is incompatible with older control plane version 3.9.1"},
	} {
		id := uuid.NewString()
		dp, err := dialDP(t, cp.addr, cp.cert, dpOpts{version: tc.version, id: id})
		if err != nil {
			t.Fatalf("%s: dial: %v", tc.version, err)
		}
		select {
		case r := <-dp.configs:
			t.Fatalf("%s: incompatible DP got a config %s", tc.version, r.msg.ConfigHash)
		case <-dp.done:
		case <-time.After(15 * time.Second):
			t.Fatalf("%s: connection not closed", tc.version)
		}
		if dp.err == nil || !strings.Contains(dp.err.Error(), tc.msg) {
			t.Errorf("%s: DP saw %v, want the reason %q", tc.version, dp.err, tc.msg)
		}
		if !strings.Contains(cp.log.String(), tc.msg) {
			t.Errorf("%s: CP log lacks %q", tc.version, tc.msg)
		}
		e, ok := cp.Registry().Get(id)
		if !ok || e.SyncStatus != wire.SyncStatusKongVersionIncompatible || e.Version != tc.version || e.Connected {
			t.Errorf("%s: registry entry %+v (found %v)", tc.version, e, ok)
		}
	}
	// An older minor is accepted (with Kong's INFO note).
	dp := mustDialDP(t, cp.addr, cp.cert, dpOpts{version: "3.8.0"})
	dp.next(t)
	if !strings.Contains(cp.log.String(), "minor version") {
		t.Errorf("no note about the older minor version:\n%s", cp.log.String())
	}
}

func TestWrongCertificateRefused(t *testing.T) {
	st := storetest.NewSQLite(t)
	cp := startCP(t, st, sharedTLS(t), nil)
	// A DP that trusts the CP but presents another certificate: the CP
	// refuses it. (A DP holding only another shared certificate would
	// already refuse the CP's certificate itself.)
	other := sharedTLS(t)
	pair, err := wire.LoadKeyPair(other.Cert, other.Key)
	if err != nil {
		t.Fatal(err)
	}
	wrong := &tls.Config{
		InsecureSkipVerify:   true,
		ServerName:           wire.SharedServerName,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &pair, nil },
	}
	if c, err := wire.Dial(ctxT(t), cp.addr, wrong, wire.NodeInfo{ID: uuid.NewString(), Version: "3.9.1"}, wire.NewBasicInfo(nil, nil, nil), nil); err == nil {
		c.CloseNow()
		t.Fatal("DP with another certificate connected")
	} else {
		t.Logf("DP side: %v", err)
	}
	waitFor(t, "the refusal in the CP log", func() bool {
		return strings.Contains(cp.log.String(), wire.ErrCertDigest.Error())
	})
	if !strings.Contains(cp.log.String(), "remote_addr=127.0.0.1:") {
		t.Errorf("refusal not logged with the peer address:\n%s", cp.log.String())
	}

	// No client certificate at all.
	conn, err := tls.Dial("tcp", cp.addr, &tls.Config{InsecureSkipVerify: true, ServerName: wire.SharedServerName})
	if err == nil {
		_, _ = conn.Write([]byte("GET /v1/outlet HTTP/1.1\r\nHost: x\r\n\r\n"))
		_, err = conn.Read(make([]byte, 1))
		conn.Close()
	}
	if err == nil {
		t.Fatal("a client without certificate got an answer")
	}
	waitFor(t, "the no-certificate refusal", func() bool {
		return strings.Contains(cp.log.String(), wire.ErrNoClientCert.Error())
	})
	if len(cp.Registry().List()) != 0 {
		t.Errorf("refused DPs were registered: %+v", cp.Registry().List())
	}
	// The right certificate still works.
	mustDialDP(t, cp.addr, cp.cert, dpOpts{}).next(t)
}

func TestPKIMode(t *testing.T) {
	ca := newCA(t, "cluster-ca")
	cpCert, cpKey, _ := ca.issue(t, "cp.kongfb.test", true)
	dpCert, dpKey, dpNotAfter := ca.issue(t, "dp.kongfb.test", false)
	st := storetest.NewSQLite(t)
	cp := startCP(t, st, wire.TLSOptions{Mode: wire.TLSModePKI, Cert: cpCert, Key: cpKey, CA: string(ca.pem)}, nil)

	id := uuid.NewString()
	dp := mustDialDP(t, cp.addr, wire.TLSOptions{Mode: wire.TLSModePKI, Cert: dpCert, Key: dpKey, CA: string(ca.pem), ServerName: "cp.kongfb.test"}, dpOpts{id: id})
	dp.next(t)
	e, ok := cp.Registry().Get(id)
	if !ok || !e.CertExpiry.Equal(dpNotAfter) {
		t.Errorf("cert expiry %v, want %v (entry found %v)", e.CertExpiry, dpNotAfter, ok)
	}

	rogue := newCA(t, "rogue-ca")
	rCert, rKey, _ := rogue.issue(t, "dp.kongfb.test", false)
	if _, err := dialDP(t, cp.addr, wire.TLSOptions{Mode: wire.TLSModePKI, Cert: rCert, Key: rKey, CA: string(ca.pem), ServerName: "cp.kongfb.test"}, dpOpts{}); err == nil {
		t.Fatal("DP with a certificate from another CA connected")
	}
	waitFor(t, "the refusal in the CP log", func() bool {
		return strings.Contains(cp.log.String(), "failed verification during handshake")
	})
}

// Kong's per-push plugin check: a DP lacking a plugin the config uses is
// skipped (and keeps its connection); other DPs get the config.
func TestPluginIncompatibleDPSkipped(t *testing.T) {
	st := storetest.NewSQLite(t)
	cp := startCP(t, st, sharedTLS(t), nil)
	var noKeyAuth []wire.PluginInfo
	for _, p := range bundledPluginInfos() {
		if p.Name != "key-auth" {
			noKeyAuth = append(noKeyAuth, p)
		}
	}
	lackingID := uuid.NewString()
	lacking := mustDialDP(t, cp.addr, cp.cert, dpOpts{plugins: noKeyAuth, id: lackingID})
	full := mustDialDP(t, cp.addr, cp.cert, dpOpts{})
	empty := lacking.next(t).msg.ConfigHash // no plugin configured yet: sent
	full.next(t)

	insert(t, st, "plugins", map[string]any{"name": "key-auth"})
	want := expectedHash(t, st)
	full.waitHash(t, want)
	waitFor(t, "plugin_set_incompatible", func() bool {
		e, _ := cp.Registry().Get(lackingID)
		return e.SyncStatus == wire.SyncStatusPluginSetIncompatible
	})
	lacking.none(t)
	if !strings.Contains(cp.log.String(), "unable to send updated configuration to data plane: configured key-auth plugin 3.9.1 is missing from data plane") {
		t.Errorf("no skip log:\n%s", cp.log.String())
	}
	if lacking.hash.Load().(string) != empty {
		t.Error("the skipped DP changed config")
	}
	// Still connected: removing the plugin sends it the new config.
	snap, _ := st.Export(ctxT(t))
	for _, p := range snap.Collections["plugins"] {
		if err := st.Delete(ctxT(t), "plugins", p["id"].(string)); err != nil {
			t.Fatal(err)
		}
	}
	// The config is the empty one the DP already has: in sync again.
	waitFor(t, "sync_status back to normal", func() bool {
		e, _ := cp.Registry().Get(lackingID)
		return e.SyncStatus == wire.SyncStatusNormal
	})
	addService(t, st, "plain")
	lacking.waitHash(t, expectedHash(t, st))
}

func TestRegistryFromPings(t *testing.T) {
	st := storetest.NewSQLite(t)
	addService(t, st, "first") // a non-empty hash, unlike a new DP's
	cp := startCP(t, st, sharedTLS(t), nil)
	id := uuid.NewString()
	dp := mustDialDP(t, cp.addr, cp.cert, dpOpts{id: id, labels: map[string]string{"region": "eu", "tier": "gold"}})
	r := dp.next(t)
	// The test DP pings right after applying, as a DP does.
	waitFor(t, "the DP's hash in the registry", func() bool {
		e, _ := cp.Registry().Get(id)
		return e.ConfigHash == r.msg.ConfigHash && e.SyncStatus == wire.SyncStatusNormal
	})
	e, _ := cp.Registry().Get(id)
	certs, err := wire.ParseCertsPEM(mustRead(t, cp.cert.Cert))
	if err != nil {
		t.Fatal(err)
	}
	if e.Hostname != "dp-"+id[:8] || e.IP != "127.0.0.1" || e.Version != "3.9.1" || e.SyncStatus != wire.SyncStatusNormal ||
		e.Labels["region"] != "eu" || e.Labels["tier"] != "gold" || !e.Connected ||
		!e.CertExpiry.Equal(certs[0].NotAfter.Truncate(time.Second)) || time.Since(e.LastSeen) > time.Minute {
		t.Errorf("registry entry: %+v", e)
	}
	addService(t, st, "x")
	want := expectedHash(t, st)
	dp.waitHash(t, want)
	waitFor(t, "the new hash reported by ping", func() bool {
		e, _ := cp.Registry().Get(id)
		return e.ConfigHash == want
	})
	dp.close()
	waitFor(t, "disconnect recorded", func() bool {
		e, _ := cp.Registry().Get(id)
		return !e.Connected
	})
	if _, ok := cp.Registry().Get(id); !ok {
		t.Error("a disconnected DP must stay listed until its TTL expires")
	}
}

func mustRead(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestRegistryTTL(t *testing.T) {
	r := NewRegistry(time.Minute)
	now := time.Unix(1_700_000_000, 0)
	r.now = func() time.Time { return now }
	n := wire.NodeInfo{ID: "a", Hostname: "h", IP: "10.0.0.1", Version: "3.9.1", HasCert: true, CertDetails: wire.CertDetails{ExpiryTimestamp: 1_800_000_000}}
	r.connected(n, wire.SyncStatusUnknown, true)
	r.pinged("a", "")
	rows := r.Rows()
	if len(rows) != 1 || rows[0]["config_hash"] != wire.EmptyHash || rows[0]["ttl"] != int64(60) ||
		rows[0]["cert_details"].(map[string]any)["expiry_timestamp"] != int64(1_800_000_000) || rows[0]["labels"] != nil ||
		rows[0]["last_seen"] != int64(1_700_000_000) || rows[0]["sync_status"] != "unknown" {
		t.Fatalf("row: %v", rows)
	}
	now = now.Add(100 * time.Second)
	if len(r.List()) != 1 {
		t.Fatal("a connected DP expired")
	}
	if ttl := r.Rows()[0]["ttl"]; ttl != int64(0) {
		t.Errorf("ttl past the delay = %v", ttl)
	}
	r.disconnected("a")
	if len(r.List()) != 0 {
		t.Fatal("a disconnected DP past its TTL is still listed")
	}
	r.connected(wire.NodeInfo{ID: "b"}, wire.SyncStatusKongVersionIncompatible, false)
	now = now.Add(30 * time.Second)
	if rows := r.Rows(); len(rows) != 1 || rows[0]["ttl"] != int64(30) || rows[0]["cert_details"] != nil {
		t.Fatalf("rows: %v", rows)
	}
}

// HA: two CPs on one PostgreSQL database; a write through CP A reaches a DP
// connected to CP B (through LISTEN/NOTIFY).
func TestTwoControlPlanesOnePostgres(t *testing.T) {
	stA := storetest.NewPostgres(t)
	stB := storetest.Postgres().Peer(t, stA)
	tlsOpts := sharedTLS(t)
	cpA := startCP(t, stA, tlsOpts, nil)
	cpB := startCP(t, stB, tlsOpts, nil)
	dpA := mustDialDP(t, cpA.addr, tlsOpts, dpOpts{})
	dpB := mustDialDP(t, cpB.addr, tlsOpts, dpOpts{})
	if a, b := dpA.next(t), dpB.next(t); a.msg.ConfigHash != b.msg.ConfigHash {
		t.Fatalf("CPs on one database push different configs: %s vs %s", a.msg.ConfigHash, b.msg.ConfigHash)
	}
	svc := addService(t, stA, "written-on-a")
	want := expectedHash(t, stA)
	start := time.Now()
	r, _ := dpB.waitHash(t, want)
	t.Logf("write on CP A reached the DP on CP B in %v", time.Since(start))
	if serviceNames(r.cfg) != "written-on-a" {
		t.Fatalf("DP on B: %q", serviceNames(r.cfg))
	}
	dpA.waitHash(t, want)
	addRoute(t, stB, svc["id"].(string), "written-on-b", "/b")
	want = expectedHash(t, stB)
	dpA.waitHash(t, want)
	dpB.waitHash(t, want)
	// Each CP lists the DPs connected to it.
	if len(cpA.Registry().List()) != 1 || len(cpB.Registry().List()) != 1 {
		t.Errorf("registries: A %d, B %d", len(cpA.Registry().List()), len(cpB.Registry().List()))
	}
}

func TestConnectNotesMissingPluginsOneLine(t *testing.T) {
	log, lb := newLogger(t)
	logConnectNotes(context.Background(), log, wire.ConnectNotes("3.9.1", "3.8.0", bundledPluginInfos(), nil))
	out := lb.String()
	if n := strings.Count(out, "\n"); n != 2 {
		t.Errorf("%d lines, want the minor-version note and one line for the missing plugins:\n%s", n, out)
	}
	if !strings.Contains(out, "key-auth plugin 3.9.1") || !strings.Contains(out, "minor version") {
		t.Errorf("log:\n%s", out)
	}
}
