// Package redact removes credentials from audit events before they leave
// ingest.
//
// The apiserver writes bearer tokens and Secret contents into audit events
// at Request and RequestResponse level: the token a TokenReview asks about,
// the token a TokenRequest returns, every value of a Secret and the copy of
// them kubectl keeps in the last-applied-configuration annotation. An audit
// pipeline that stores those turns its Kafka topics and ClickHouse tables
// into a credential store. Ingest therefore passes every event through
// Redactor.Event, which replaces each such value with a record describing
// it (credential.JWTRecord, credential.SecretRecord) and leaves every other byte of the event as
// it was.
package redact

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/auditpipe/auditpipe/internal/credential"
	"github.com/auditpipe/auditpipe/internal/jsonscan"
)

// Config configures a Redactor.
type Config struct {
	// JWKSFile is a copy of the cluster's /openid/v1/jwks. With it, each
	// token's signature is checked and credential.JWTRecord.Verified is "yes" or
	// "no"; without it, "unknown". Optional.
	JWKSFile string `json:"jwks_file"`
	// FingerprintKey keys the HMAC written into SecretRecords so that equal
	// secret values can be matched across events. Optional: without it
	// secret values get no fingerprint. JWTs always get a plain SHA-256,
	// as their signature makes them unguessable.
	FingerprintKey string `json:"fingerprint_key"`
}

// verifyCacheSize bounds the memory of verification results. Clients reuse
// a token for up to an hour, so a TokenReview-heavy cluster presents the same
// few thousand tokens over and over; an RSA verification costs tens of
// microseconds, a map lookup nothing. When full the cache is simply cleared:
// the cost of that is a burst of re-verification, not a wrong answer.
const verifyCacheSize = 4096

// Redactor replaces credentials in audit events. It is safe for concurrent
// use.
type Redactor struct {
	keys  *credential.KeySet
	fpKey []byte

	mu    sync.Mutex
	cache map[[sha256.Size]byte]verifyResult
	// docs pools the walk state, so that redacting an event with nothing
	// to redact does not allocate.
	docs sync.Pool
}

// verifyResult is what the cache keeps of a token: its verification, and
// its whole record as JSON when that is at most maxCachedRecord bytes.
type verifyResult struct {
	verified, why string
	enc           []byte
}

// New builds a Redactor, loading cfg.JWKSFile if set.
func New(cfg Config) (*Redactor, error) {
	r := &Redactor{cache: make(map[[sha256.Size]byte]verifyResult)}
	if cfg.JWKSFile != "" {
		ks, err := credential.LoadJWKS(cfg.JWKSFile)
		if err != nil {
			return nil, fmt.Errorf("building redactor: %w", err)
		}
		r.keys = ks
	}
	if cfg.FingerprintKey != "" {
		r.fpKey = []byte(cfg.FingerprintKey)
	}
	return r, nil
}

// ErrNotObject reports an event that is not a JSON object.
var ErrNotObject = errors.New("event is not a JSON object")

// Event returns raw with every credential replaced. When raw holds none it
// returns raw itself and changed is false. When err is non-nil (raw is not
// valid JSON), out is nil and the event must not be forwarded: the
// redactor could not tell where its secrets are.
//
// raw is never modified; a changed event is a new slice.
func (r *Redactor) Event(raw []byte) (out []byte, changed bool, err error) {
	sc := jsonscan.Scanner{Data: raw}
	if c, err := sc.Peek(); err != nil || c != '{' {
		if err == nil {
			err = ErrNotObject
		}
		return nil, false, fmt.Errorf("redacting event: %w", err)
	}
	d, _ := r.docs.Get().(*doc)
	if d == nil {
		d = &doc{r: r}
	}
	defer r.docs.Put(d)
	out, err = d.run(raw, true, false)
	if err != nil {
		return nil, false, fmt.Errorf("redacting event: %w", err)
	}
	changed = len(out) != len(raw) || &out[0] != &raw[0]
	return out, changed, nil
}

// edit replaces b[start:end] with repl.
type edit struct {
	start, end int
	repl       []byte
	seq        int
}

// apply returns b with edits applied. An edit inside another (a string
// redacted within a Secret value that was then replaced whole) is dropped;
// of two edits of the same span the later one wins, as it was made with
// more knowledge (settle runs after the walk).
func apply(b []byte, edits []edit) []byte {
	for i := range edits {
		edits[i].seq = i
	}
	slices.SortFunc(edits, func(x, y edit) int {
		if x.start != y.start {
			return x.start - y.start
		}
		if x.end != y.end {
			return y.end - x.end
		}
		return y.seq - x.seq
	})
	kept := edits[:0]
	n := len(b)
	prevEnd := -1
	for _, e := range edits {
		if e.start < prevEnd {
			continue
		}
		kept = append(kept, e)
		n += len(e.repl) - (e.end - e.start)
		prevEnd = e.end
	}
	out := make([]byte, 0, n)
	prev := 0
	for _, e := range kept {
		out = append(out, b[prev:e.start]...)
		out = append(out, e.repl...)
		prev = e.end
	}
	return append(out, b[prev:]...)
}

// mustJSON encodes records and strings, which cannot fail to encode; the
// fallback still removes the secret.
func mustJSON(v any) []byte {
	out, err := json.Marshal(v)
	if err != nil {
		return []byte("null")
	}
	return out
}

// maxCachedRecord bounds a record kept in the verification cache as
// JSON: the records of real tokens take a few hundred bytes, and the bound
// keeps the cache within verifyCacheSize × 2 KiB (8 MiB) whatever tokens a
// sender makes up; a larger record is built again each time.
const maxCachedRecord = 2 << 10

// recordJSON builds the record for a token field, as JSON: a
// credential.JWTRecord when the value has a JWT's shape, malformed or
// not; else (a bootstrap or static token) a credential.SecretRecord. A
// JWT's record depends on its bytes alone (and the key set, fixed for the
// Redactor), so the record of a token seen before comes from the cache:
// clients present the same token for up to an hour, and parsing its
// claims with encoding/json and encoding the record cost more than the
// rest of the event's redaction. The slice is shared: callers only read
// it.
func (r *Redactor) recordJSON(tok []byte) []byte {
	if !credential.IsJWT(tok) {
		return mustJSON(r.secretRecord(tok))
	}
	sum := sha256.Sum256(tok)
	r.mu.Lock()
	res, ok := r.cache[sum]
	r.mu.Unlock()
	if ok && res.enc != nil {
		return res.enc
	}
	rec := credential.ParseJWT(tok)
	rec.SHA256 = hex.EncodeToString(sum[:])
	if !ok {
		res.verified, res.why = credential.VerifyJWT(tok, &rec, r.keys)
	}
	rec.Verified, rec.VerifyError = res.verified, res.why
	enc := mustJSON(rec)
	if len(enc) <= maxCachedRecord {
		res.enc = enc
	}
	r.mu.Lock()
	if len(r.cache) >= verifyCacheSize {
		clear(r.cache)
	}
	r.cache[sum] = res
	r.mu.Unlock()
	return enc
}

func (r *Redactor) secretRecord(val []byte) credential.SecretRecord {
	rec := credential.SecretRecord{Redacted: credential.KindSecret, Length: len(val)}
	if r.fpKey != nil {
		m := hmac.New(sha256.New, r.fpKey)
		m.Write(val)
		rec.HMACSHA256 = hex.EncodeToString(m.Sum(nil))
	}
	return rec
}
