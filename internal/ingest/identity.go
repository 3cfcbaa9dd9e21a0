package ingest

import (
	"context"
	"fmt"
	"net/http"
)

// Identity is who posted a batch, as the authentication layer established
// it. Cluster is the cluster that identity may write for.
type Identity struct {
	// Method is how the caller proved who it is: "mtls", "token", or ""
	// for an unauthenticated caller (only on an --insecure-listen server).
	Method string
	// Name identifies the credential in logs and metrics without
	// revealing it: the certificate's CN, or the token's configured name.
	Name string
	// Cluster is the cluster the credential is bound to; empty when the
	// credential is not bound to one.
	Cluster string
}

type identityKey struct{}

// WithIdentity returns ctx carrying id; the authentication middleware sets
// it, the webhook handler reads it.
func WithIdentity(ctx context.Context, id Identity) context.Context {
	return context.WithValue(ctx, identityKey{}, id)
}

// IdentityFrom returns the identity in ctx, if any.
func IdentityFrom(ctx context.Context) (Identity, bool) {
	id, ok := ctx.Value(identityKey{}).(Identity)
	return id, ok
}

// resolveCluster decides which cluster a request writes for, in order of
// trust: the authenticated credential's cluster, then the path, then the
// configured default. A path naming another cluster than the credential's
// is refused: one cluster's apiserver must not write into another's stream.
func resolveCluster(r *http.Request, defaultCluster string) (string, int, error) {
	path := r.PathValue("cluster")
	if path != "" {
		if err := ValidateCluster(path); err != nil {
			return "", http.StatusBadRequest, err
		}
	}
	if id, ok := IdentityFrom(r.Context()); ok && id.Cluster != "" {
		if path != "" && path != id.Cluster {
			return "", http.StatusForbidden, fmt.Errorf("credential %q is bound to cluster %q and may not write for cluster %q", id.Name, id.Cluster, path)
		}
		return id.Cluster, 0, nil
	}
	if path != "" {
		return path, 0, nil
	}
	return defaultCluster, 0, nil
}
