// Package auditsend sends audit events exactly as kube-apiserver does: it
// drives the apiserver's own webhook backend
// (k8s.io/apiserver/plugin/pkg/audit/webhook) behind its buffered batcher,
// configured by a kubeconfig file. Tests, the demo and the load generator
// use it so that ingest is always exercised by the real sender.
package auditsend

import (
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apiserver/pkg/apis/audit"
	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"
	auditbackend "k8s.io/apiserver/pkg/audit"
	"k8s.io/apiserver/plugin/pkg/audit/buffered"
	"k8s.io/apiserver/plugin/pkg/audit/webhook"
)

// Config mirrors kube-apiserver's --audit-webhook-* flags. Zero values take
// the apiserver's defaults, except MaxBatchWait and InitialBackoff, which
// default shorter so that tests and the demo do not wait 30 s.
type Config struct {
	// Kubeconfig is the --audit-webhook-config-file.
	Kubeconfig string
	// BufferSize is --audit-webhook-batch-buffer-size (10000); events
	// beyond it are dropped by the apiserver, and counted here.
	BufferSize int
	// MaxBatchSize is --audit-webhook-batch-max-size (400).
	MaxBatchSize int
	// MaxBatchWait is --audit-webhook-batch-max-wait (apiserver: 30s).
	MaxBatchWait time.Duration
	// InitialBackoff is --audit-webhook-initial-backoff (apiserver: 10s).
	InitialBackoff time.Duration
	// ThrottleQPS and ThrottleBurst are --audit-webhook-batch-throttle-*
	// (10 and 15); 0 QPS disables throttling.
	ThrottleQPS   float32
	ThrottleBurst int
}

// Sender is a running apiserver-style audit webhook client.
type Sender struct {
	backend auditbackend.Backend
	stop    chan struct{}
	once    sync.Once

	sent    atomic.Int64
	failed  atomic.Int64
	dropped atomic.Int64
}

// counting sits between the batcher and the webhook so tests can see what
// the apiserver would have recorded in apiserver_audit_error_total.
type counting struct {
	auditbackend.Backend
	s *Sender
}

func (c counting) ProcessEvents(evs ...*audit.Event) bool {
	ok := c.Backend.ProcessEvents(evs...)
	if ok {
		c.s.sent.Add(int64(len(evs)))
	} else {
		c.s.failed.Add(int64(len(evs)))
	}
	return ok
}

// New starts a sender.
func New(cfg Config) (*Sender, error) {
	if cfg.BufferSize <= 0 {
		cfg.BufferSize = 10000
	}
	if cfg.MaxBatchSize <= 0 {
		cfg.MaxBatchSize = 400
	}
	if cfg.MaxBatchWait <= 0 {
		cfg.MaxBatchWait = 100 * time.Millisecond
	}
	if cfg.InitialBackoff <= 0 {
		cfg.InitialBackoff = 200 * time.Millisecond
	}
	backoff := wait.Backoff{Duration: cfg.InitialBackoff, Factor: 1.5, Jitter: 0.2, Steps: 5}
	wh, err := webhook.NewBackend(cfg.Kubeconfig, auditv1.SchemeGroupVersion, backoff, nil)
	if err != nil {
		return nil, fmt.Errorf("creating webhook backend: %w", err)
	}
	s := &Sender{stop: make(chan struct{})}
	s.backend = buffered.NewBackend(counting{Backend: wh, s: s}, buffered.BatchConfig{
		BufferSize:     cfg.BufferSize,
		MaxBatchSize:   cfg.MaxBatchSize,
		MaxBatchWait:   cfg.MaxBatchWait,
		ThrottleEnable: cfg.ThrottleQPS > 0,
		ThrottleQPS:    cfg.ThrottleQPS,
		ThrottleBurst:  cfg.ThrottleBurst,
		AsyncDelegate:  true,
	})
	if err := s.backend.Run(s.stop); err != nil {
		return nil, fmt.Errorf("starting webhook backend: %w", err)
	}
	return s, nil
}

// Send queues events as the apiserver's audit layer does. Events that do
// not fit the buffer are dropped, as by the apiserver, and counted.
func (s *Sender) Send(evs ...*auditv1.Event) error {
	for _, ev := range evs {
		var internal audit.Event
		if err := auditbackend.Scheme.Convert(ev, &internal, nil); err != nil {
			return fmt.Errorf("converting event %s: %w", ev.AuditID, err)
		}
		if !s.backend.ProcessEvents(&internal) {
			s.dropped.Add(1)
		}
	}
	return nil
}

// Shutdown sends what is buffered (with retries) and stops. Safe twice.
func (s *Sender) Shutdown() {
	s.once.Do(func() {
		close(s.stop)
		s.backend.Shutdown()
	})
}

// Stats reports events acknowledged by the webhook, events whose batch
// failed after all retries, and events dropped because the buffer was full.
func (s *Sender) Stats() (sent, failed, dropped int64) {
	return s.sent.Load(), s.failed.Load(), s.dropped.Load()
}

// KubeconfigOptions says how the sender authenticates to ingest.
type KubeconfigOptions struct {
	CAFile, ClientCertFile, ClientKeyFile string
	Token                                 string
}

// WriteKubeconfig writes a webhook kubeconfig pointing at server, as an
// operator would for --audit-webhook-config-file.
func WriteKubeconfig(path, server string, o KubeconfigOptions) error {
	user := "  user: {}\n"
	if o.ClientCertFile != "" || o.Token != "" {
		user = "  user:\n"
		if o.ClientCertFile != "" {
			user += fmt.Sprintf("    client-certificate: %q\n    client-key: %q\n", o.ClientCertFile, o.ClientKeyFile)
		}
		if o.Token != "" {
			user += fmt.Sprintf("    token: %q\n", o.Token)
		}
	}
	ca := ""
	if o.CAFile != "" {
		ca = fmt.Sprintf("    certificate-authority: %q\n", o.CAFile)
	}
	cfg := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: auditpipe
  cluster:
    server: %q
%scontexts:
- name: default
  context:
    cluster: auditpipe
    user: apiserver
current-context: default
users:
- name: apiserver
%s`, server, ca, user)
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		return fmt.Errorf("writing kubeconfig: %w", err)
	}
	return nil
}
