package ingest

import (
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/auditpipe/auditpipe/internal/cloud/eks"
)

// MethodFirehoseKey is Identity.Method for a caller that presented a
// Firehose access key.
const MethodFirehoseKey = "firehose_key"

// ReasonBadAccessKey counts, in MetricAuthFailures, Firehose requests
// whose X-Amz-Firehose-Access-Key matches no configured key.
const ReasonBadAccessKey = "bad_access_key"

// newFirehoseKeys loads the Firehose access key file: the token file's
// format (YAML tokens: [{name, token, cluster}], or lines of
// key,name,cluster), each key bound to the cluster its stream delivers
// for, re-read when it changes. Keys are kept apart from the bearer
// tokens: an access key is stored in the Firehose stream's configuration,
// where more people can read it than a webhook kubeconfig, so it opens the
// Firehose path only.
func newFirehoseKeys(path string, interval time.Duration, now func() time.Time, log *slog.Logger, reloads *prometheus.CounterVec) (*reloader[authState], error) {
	if path == "" {
		return nil, nil
	}
	return newReloader("firehose-access-keys", []string{path}, interval, now, log, reloads, func(b [][]byte) (*authState, error) {
		return buildAuthState(path, b[0], "", nil)
	})
}

// authenticateFirehose checks a request to the Firehose path. Firehose
// can send no Authorization header and no client certificate: its access
// key, copied verbatim from the stream's configuration into
// X-Amz-Firehose-Access-Key, is the only credential it has, and the only
// one accepted here.
func (a *Authenticator) authenticateFirehose(r *http.Request) (Identity, string, error) {
	key := r.Header.Get(HeaderFirehoseAccessKey)
	if key == "" {
		return Identity{}, ReasonNoCredentials, errors.New("authentication required: set the Firehose stream's HTTP endpoint access key to a key from --firehose-access-key-file")
	}
	if a.firehose == nil || len(key) > eks.MaxAccessKeyBytes {
		return Identity{}, ReasonBadAccessKey, errors.New("invalid Firehose access key")
	}
	e, ok := a.firehose.get().lookup(key)
	if !ok {
		return Identity{}, ReasonBadAccessKey, errors.New("invalid Firehose access key")
	}
	return Identity{Method: MethodFirehoseKey, Name: e.name, Cluster: e.cluster}, "", nil
}
