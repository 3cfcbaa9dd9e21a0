package clickhouse

import (
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/auditpipe/auditpipe/internal/testutil/chtest"
)

// dropProxy forwards TCP connections to a server and, once told to, drops
// each connection it already holds at the client's next write, without
// forwarding it: a connection that sits healthy in the pool and is closed
// by the server as a request arrives (a restart, an idle timeout).
type dropProxy struct {
	ln      net.Listener
	backend string
	mu      sync.Mutex
	conns   []*proxyConn
	dropped atomic.Int32
}

type proxyConn struct {
	client, server net.Conn
	doomed         atomic.Bool
}

func newDropProxy(t *testing.T, backend string) *dropProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &dropProxy{ln: ln, backend: backend}
	go p.serve()
	t.Cleanup(func() {
		_ = ln.Close()
		p.mu.Lock()
		defer p.mu.Unlock()
		for _, c := range p.conns {
			_ = c.client.Close()
			_ = c.server.Close()
		}
	})
	return p
}

func (p *dropProxy) serve() {
	for {
		client, err := p.ln.Accept()
		if err != nil {
			return
		}
		server, err := net.Dial("tcp", p.backend)
		if err != nil {
			_ = client.Close()
			continue
		}
		c := &proxyConn{client: client, server: server}
		p.mu.Lock()
		p.conns = append(p.conns, c)
		p.mu.Unlock()
		go func() { _, _ = io.Copy(client, server); _ = client.Close() }()
		go func() {
			buf := make([]byte, 32<<10)
			for {
				n, err := client.Read(buf)
				if n > 0 && c.doomed.Load() {
					p.dropped.Add(1)
					_ = client.Close()
					_ = server.Close()
					return
				}
				if n > 0 {
					if _, werr := server.Write(buf[:n]); werr != nil {
						return
					}
				}
				if err != nil {
					_ = server.Close()
					return
				}
			}
		}()
	}
}

// doom marks every connection open now to be dropped at its next request.
func (p *dropProxy) doom() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.doomed.Store(true)
	}
}

// TestStoreStaleConnection: a pooled connection the server closed as the
// INSERT arrived costs a second connection, not the Write.
func TestStoreStaleConnection(t *testing.T) {
	srv := chtest.Start(t)
	db := srv.NewDatabase(t)
	proxy := newDropProxy(t, srv.TCPAddr)
	dsn := strings.Replace(srv.DSN, srv.TCPAddr, proxy.ln.Addr().String(), 1)
	st, err := New(testContext(t), Config{DSN: dsn, Database: db}.WithDefaults(), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.Write(testContext(t), testBatch(t)); err != nil {
		t.Fatalf("first Write: %v", err)
	}
	proxy.doom()
	if err := st.Write(testContext(t), testBatch(t)); err != nil {
		t.Fatalf("Write over a connection the server dropped: %v", err)
	}
	if proxy.dropped.Load() == 0 {
		t.Fatal("no connection was dropped: the test proves nothing")
	}
	if got := counterValue(t, st.metrics.errors.WithLabelValues(EventsTable, "retryable")); got != 0 {
		t.Errorf("insert_errors_total{events,retryable} = %v, want 0", got)
	}
	if got := count(t, checker(t, srv), "SELECT count() FROM "+db+".events FINAL"); got != 3 {
		t.Errorf("events FINAL = %d, want 3", got)
	}
}
