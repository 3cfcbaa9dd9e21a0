package ingest

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/auditpipe/auditpipe/internal/pipeline"
	"github.com/auditpipe/auditpipe/internal/redact"
	"github.com/auditpipe/auditpipe/internal/spool"
)

// Support for hostile_test.go: a handler built as production builds it
// (the real redactor, debug logging) in front of a spool whose lines the
// tests read back, and builders for complete audit events.

// hostileLogs collects log output written by handler goroutines.
type hostileLogs struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *hostileLogs) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *hostileLogs) Bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return bytes.Clone(b.buf.Bytes())
}

// hostileServer serves a handler with cfg, the default redactor and debug
// logging into the returned buffer, producing to prod.
func hostileServer(t *testing.T, cfg Config, prod pipeline.Producer) (*httptest.Server, *hostileLogs) {
	t.Helper()
	red, err := redact.New(redact.Config{})
	if err != nil {
		t.Fatal(err)
	}
	logs := &hostileLogs{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	h, err := New(cfg, prod, red, nil, log, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv, logs
}

// hostileSpool is a spool writer in a temporary directory.
type hostileSpool struct {
	dir string
	w   *spool.Writer
}

func newHostileSpool(t *testing.T) *hostileSpool {
	t.Helper()
	dir := t.TempDir()
	w, err := spool.NewWriter(spool.WriterConfig{Dir: dir}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	return &hostileSpool{dir: dir, w: w}
}

// hostileRecord is one message as it reached the transport.
type hostileRecord struct {
	Key   []byte
	Value []byte
}

// records reads every line of the spool's segments (each is fsynced before
// Produce returns, so a finished request's lines are all there).
func (s *hostileSpool) records(t *testing.T) []hostileRecord {
	t.Helper()
	segs, err := filepath.Glob(filepath.Join(s.dir, "segment-*"))
	if err != nil {
		t.Fatal(err)
	}
	var out []hostileRecord
	for _, seg := range segs {
		data, err := os.ReadFile(seg)
		if err != nil {
			t.Fatal(err)
		}
		for l := range bytes.Lines(data) {
			var line struct {
				Key   string          `json:"key"`
				Event json.RawMessage `json:"event"`
			}
			if err := json.Unmarshal(l, &line); err != nil {
				t.Fatalf("spool line does not decode: %v\n%s", err, l)
			}
			out = append(out, hostileRecord{Key: []byte(line.Key), Value: line.Event})
		}
	}
	return out
}

// hostileResponse is the webhook's answer read loosely: RejectedCount is the
// count of all rejected items the spec asks for next to the (capped) list.
type hostileResponse struct {
	Accepted      int         `json:"accepted"`
	Rejected      []Rejection `json:"rejected"`
	RejectedCount *int        `json:"rejected_count"`
	Error         string      `json:"error"`
}

// hostilePost posts body and returns the status, the raw answer and the answer
// decoded. err is the transport's (a deadline, typically).
func hostilePost(ctx context.Context, url string, body []byte) (int, []byte, hostileResponse, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return 0, nil, hostileResponse{}, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, hostileResponse{}, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, raw, hostileResponse{}, err
	}
	var r hostileResponse
	_ = json.Unmarshal(raw, &r)
	return resp.StatusCode, raw, r, nil
}

// hostileSetMaxEvents sets Config.MaxEventsPerRequest when the field exists. It is
// being added in parallel with these tests; reflection lets a row that
// needs a cap above its item count compile before and after.
func hostileSetMaxEvents(cfg *Config, n int64) {
	f := reflect.ValueOf(cfg).Elem().FieldByName("MaxEventsPerRequest")
	if !f.IsValid() || !f.CanSet() {
		return
	}
	switch f.Kind() {
	case reflect.Int, reflect.Int32, reflect.Int64:
		f.SetInt(n)
	case reflect.Uint, reflect.Uint32, reflect.Uint64:
		f.SetUint(uint64(n))
	}
}

// hostileEdit decodes one JSON object (numbers kept exact), lets edit change
// it and encodes it again.
func hostileEdit(t *testing.T, raw string, edit func(m map[string]any)) string {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(raw))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		t.Fatalf("fixture does not decode: %v\n%s", err, raw)
	}
	edit(m)
	out, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

// hostileAuditID reads an event's auditID; "" when it has none.
func hostileAuditID(raw []byte) string {
	var ev struct {
		AuditID string `json:"auditID"`
	}
	_ = json.Unmarshal(raw, &ev)
	return ev.AuditID
}

// hostileCarrier returns a complete, valid RequestResponse event (every
// field a validating ingest may require is there) with auditID n, after
// edit changed it: the fixtures below move a secret into one place each.
func hostileCarrier(t *testing.T, n int, edit func(ev map[string]any)) string {
	t.Helper()
	base := fmt.Sprintf(`{"level":"RequestResponse","auditID":"5ec7e700-0000-4000-8000-%012d","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/payments/configmaps/app-config","verb":"get","user":{"username":"alice@example.com","groups":["system:authenticated"]},"sourceIPs":["192.168.50.21"],"userAgent":"kubectl/v1.31.2 (linux/amd64) kubernetes/5864a46","objectRef":{"resource":"configmaps","namespace":"payments","name":"app-config","apiVersion":"v1"},"responseStatus":{"metadata":{},"code":200},"requestReceivedTimestamp":"2026-11-27T09:20:01.123456Z","stageTimestamp":"2026-11-27T09:20:01.131987Z","annotations":{"authorization.k8s.io/decision":"allow","authorization.k8s.io/reason":"RBAC: allowed by RoleBinding \"payments-admin/payments\" of ClusterRole \"admin\" to User \"alice@example.com\""}}`, n)
	return hostileEdit(t, base, edit)
}

// hostileObj parses a JSON object literal for use inside an edit.
func hostileObj(t *testing.T, s string) map[string]any {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(s))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		t.Fatalf("fixture object does not decode: %v\n%s", err, s)
	}
	return m
}

func hostileB64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// hostileHasDataKey reports whether some data or stringData map in the event
// still has the key name: redaction keeps a Secret's keys.
func hostileHasDataKey(raw []byte, name string) bool {
	var v any
	if json.Unmarshal(raw, &v) != nil {
		return false
	}
	var found func(v any) bool
	found = func(v any) bool {
		switch x := v.(type) {
		case map[string]any:
			for k, e := range x {
				if k == "data" || k == "stringData" {
					if m, ok := e.(map[string]any); ok {
						if _, ok := m[name]; ok {
							return true
						}
					}
				}
				if found(e) {
					return true
				}
			}
		case []any:
			for _, e := range x {
				if found(e) {
					return true
				}
			}
		}
		return false
	}
	return found(v)
}
