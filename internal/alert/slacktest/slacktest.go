// Package slacktest is a fake Slack incoming-webhook server for tests. It
// validates each payload the way Slack does (JSON shape, required fields,
// Block Kit limits) and answers 400 with Slack's error names when one is
// wrong, so a test passes only with a message Slack would accept. It can
// be told to answer 429 with Retry-After, or 500, a number of times.
package slacktest

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
	"unicode/utf8"
)

// Slack's limits, from docs.slack.dev reference/block-kit.
const (
	maxBlocks      = 50
	maxHeader      = 150
	maxSectionText = 3000
	maxFields      = 10
	maxField       = 2000
	maxContext     = 10
	maxText        = 40000
)

// WebhookPath is the path of the fake webhook. It plays the secret part
// of a real Slack webhook URL; tests check it never shows up in logs.
const WebhookPath = "/services/T0AUDIT/B0PIPE/xoxb-fake-webhook-secret-3f9a"

// Message is one accepted payload.
type Message struct {
	Raw     []byte
	Payload map[string]any
}

// Server is a running fake Slack.
type Server struct {
	// URL is the full webhook URL, secret path included.
	URL string

	srv *httptest.Server

	mu       sync.Mutex
	msgs     []Message
	rejected []error
	requests int
	failures []failure
	arrived  chan struct{}
}

type failure struct {
	status     int
	retryAfter string
}

// New starts a fake Slack, stopped when the test ends.
func New(t testing.TB) *Server {
	s := &Server{arrived: make(chan struct{}, 1)}
	s.srv = httptest.NewServer(http.HandlerFunc(s.handle))
	s.URL = s.srv.URL + WebhookPath
	t.Cleanup(s.srv.Close)
	return s
}

// Close stops the server; later requests fail to connect.
func (s *Server) Close() { s.srv.Close() }

// FailNext makes the next n requests answer status, with a Retry-After
// header when retryAfter is not empty.
func (s *Server) FailNext(n, status int, retryAfter string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for range n {
		s.failures = append(s.failures, failure{status, retryAfter})
	}
}

// Messages returns the accepted payloads so far.
func (s *Server) Messages() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Message(nil), s.msgs...)
}

// Rejected returns why payloads were refused as invalid.
func (s *Server) Rejected() []error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]error(nil), s.rejected...)
}

// Requests counts every request, failed or not.
func (s *Server) Requests() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests
}

// WaitMessages waits until at least n messages were accepted, failing the
// test after timeout. The timeout only bounds a broken run; it is not an
// assertion about speed, so make it generous.
func (s *Server) WaitMessages(t testing.TB, n int, timeout time.Duration) []Message {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		if m := s.Messages(); len(m) >= n {
			return m
		}
		select {
		case <-s.arrived:
		case <-deadline.C:
			t.Fatalf("slacktest: %d messages after %s, want %d (rejected: %v)", len(s.Messages()), timeout, n, s.Rejected())
		}
	}
}

func (s *Server) handle(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.requests++
	var fail *failure
	if len(s.failures) > 0 {
		fail = &s.failures[0]
		s.failures = s.failures[1:]
	}
	s.mu.Unlock()
	if r.Method != http.MethodPost {
		http.Error(w, "invalid_method", http.StatusMethodNotAllowed)
		return
	}
	if r.URL.Path != WebhookPath {
		http.Error(w, "no_service", http.StatusNotFound)
		return
	}
	if fail != nil {
		if fail.retryAfter != "" {
			w.Header().Set("Retry-After", fail.retryAfter)
		}
		msg := "rate_limited"
		if fail.status >= 500 {
			msg = "internal_error"
		}
		http.Error(w, msg, fail.status)
		return
	}
	raw, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		http.Error(w, "invalid_payload", http.StatusBadRequest)
		return
	}
	var p map[string]any
	if err := json.Unmarshal(raw, &p); err != nil {
		s.reject(w, "invalid_payload", fmt.Errorf("payload is not a JSON object: %w", err))
		return
	}
	if err := Validate(p); err != nil {
		s.reject(w, "invalid_blocks", err)
		return
	}
	s.mu.Lock()
	s.msgs = append(s.msgs, Message{Raw: raw, Payload: p})
	s.mu.Unlock()
	select {
	case s.arrived <- struct{}{}:
	default:
	}
	_, _ = io.WriteString(w, "ok")
}

func (s *Server) reject(w http.ResponseWriter, code string, err error) {
	s.mu.Lock()
	s.rejected = append(s.rejected, err)
	s.mu.Unlock()
	select {
	case s.arrived <- struct{}{}:
	default:
	}
	http.Error(w, code, http.StatusBadRequest)
}

// Validate checks a decoded payload as Slack would.
func Validate(p map[string]any) error {
	text, _ := p["text"].(string)
	blocks, hasBlocks := p["blocks"].([]any)
	atts, hasAtts := p["attachments"].([]any)
	if text == "" && !hasBlocks && !hasAtts {
		return fmt.Errorf("no_text: need text, blocks or attachments")
	}
	if utf8.RuneCountInString(text) > maxText {
		return fmt.Errorf("text is %d characters, limit %d", utf8.RuneCountInString(text), maxText)
	}
	if hasBlocks {
		if err := validateBlocks("blocks", blocks); err != nil {
			return err
		}
	}
	for i, a := range atts {
		am, ok := a.(map[string]any)
		if !ok {
			return fmt.Errorf("attachments[%d] is not an object", i)
		}
		if bl, ok := am["blocks"]; ok {
			list, ok := bl.([]any)
			if !ok {
				return fmt.Errorf("attachments[%d].blocks is not a list", i)
			}
			if err := validateBlocks(fmt.Sprintf("attachments[%d].blocks", i), list); err != nil {
				return err
			}
		} else if am["text"] == nil && am["fallback"] == nil && am["title"] == nil {
			return fmt.Errorf("attachments[%d] has neither blocks nor text", i)
		}
	}
	return nil
}

func validateBlocks(key string, blocks []any) error {
	if len(blocks) == 0 || len(blocks) > maxBlocks {
		return fmt.Errorf("%s: %d blocks, want 1 to %d", key, len(blocks), maxBlocks)
	}
	for i, b := range blocks {
		bm, ok := b.(map[string]any)
		if !ok {
			return fmt.Errorf("%s[%d] is not an object", key, i)
		}
		k := fmt.Sprintf("%s[%d]", key, i)
		switch bm["type"] {
		case "header":
			if err := textObject(k+".text", bm["text"], maxHeader, true); err != nil {
				return err
			}
		case "section":
			fields, _ := bm["fields"].([]any)
			if bm["text"] == nil && len(fields) == 0 {
				return fmt.Errorf("%s: section needs text or fields", k)
			}
			if bm["text"] != nil {
				if err := textObject(k+".text", bm["text"], maxSectionText, false); err != nil {
					return err
				}
			}
			if len(fields) > maxFields {
				return fmt.Errorf("%s.fields: %d fields, limit %d", k, len(fields), maxFields)
			}
			for j, f := range fields {
				if err := textObject(fmt.Sprintf("%s.fields[%d]", k, j), f, maxField, false); err != nil {
					return err
				}
			}
		case "context":
			els, _ := bm["elements"].([]any)
			if len(els) == 0 || len(els) > maxContext {
				return fmt.Errorf("%s.elements: %d elements, want 1 to %d", k, len(els), maxContext)
			}
			for j, e := range els {
				if err := textObject(fmt.Sprintf("%s.elements[%d]", k, j), e, maxSectionText, false); err != nil {
					return err
				}
			}
		case "divider":
		default:
			return fmt.Errorf("%s: unsupported block type %v", k, bm["type"])
		}
	}
	return nil
}

func textObject(key string, v any, limit int, plainOnly bool) error {
	m, ok := v.(map[string]any)
	if !ok {
		return fmt.Errorf("%s is not a text object", key)
	}
	typ, _ := m["type"].(string)
	if typ != "plain_text" && (plainOnly || typ != "mrkdwn") {
		return fmt.Errorf("%s: text type %q not allowed here", key, typ)
	}
	s, _ := m["text"].(string)
	if s == "" {
		return fmt.Errorf("%s: empty text", key)
	}
	if n := utf8.RuneCountInString(s); n > limit {
		return fmt.Errorf("%s: %d characters, limit %d", key, n, limit)
	}
	return nil
}
