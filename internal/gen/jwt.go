package gen

import (
	"time"
)

// JWTs as the apiserver's service-account issuer mints them. The signature
// is random bytes of the right length: nothing verifies it, and detectors
// are configured without the cluster's JWKS unless a test supplies one.

// extendedExpiry is how long kubelet-requested 3607 s tokens really live
// when the apiserver extends them (--service-account-extend-token-expiration),
// with warnafter marking the nominal hour.
const extendedExpiry = 365 * 24 * time.Hour

// tokenClaims are the claims of a pod-bound service-account token.
type tokenClaims struct {
	ns, sa, saUID     string
	podName, podUID   string
	nodeName, nodeUID string
	jti               string
	iat               time.Time
}

// podToken returns a signed (RS256, in-tree kid) pod-bound token.
func (g *Generator) podToken(c *tokenClaims) string {
	b := make([]byte, 0, 1400)
	b = append(b, b64url.EncodeToString([]byte(`{"alg":"RS256","kid":"`+g.w.kid+`"}`))...)
	b = append(b, '.')

	iat := c.iat.Unix()
	p := make([]byte, 0, 700)
	p = append(p, `{"aud":["`...)
	p = append(p, podAudience...)
	p = append(p, `"],"exp":`...)
	p = appendInt(p, iat+int64(extendedExpiry/time.Second))
	p = append(p, `,"iat":`...)
	p = appendInt(p, iat)
	p = append(p, `,"iss":"`...)
	p = append(p, podAudience...)
	p = append(p, `","jti":"`...)
	p = append(p, c.jti...)
	p = append(p, `","kubernetes.io":{"namespace":"`...)
	p = append(p, c.ns...)
	p = append(p, `","node":{"name":"`...)
	p = append(p, c.nodeName...)
	p = append(p, `","uid":"`...)
	p = append(p, c.nodeUID...)
	p = append(p, `"},"pod":{"name":"`...)
	p = append(p, c.podName...)
	p = append(p, `","uid":"`...)
	p = append(p, c.podUID...)
	p = append(p, `"},"serviceaccount":{"name":"`...)
	p = append(p, c.sa...)
	p = append(p, `","uid":"`...)
	p = append(p, c.saUID...)
	p = append(p, `"},"warnafter":`...)
	p = appendInt(p, iat+3607)
	p = append(p, `},"nbf":`...)
	p = appendInt(p, iat)
	p = append(p, `,"sub":"system:serviceaccount:`...)
	p = append(p, c.ns...)
	p = append(p, ':')
	p = append(p, c.sa...)
	p = append(p, `"}`...)
	b = b64url.AppendEncode(b, p)
	b = append(b, '.')

	var sig [256]byte // RSA-2048
	g.r.bytes(sig[:])
	b = b64url.AppendEncode(b, sig[:])
	return string(b)
}

// unsignedToken returns a token with alg "none" and an empty signature,
// claiming to be a powerful controller's service account: what an attacker
// forges against a validator that skips signature checks.
func unsignedToken(iat time.Time, jti string) string {
	p := make([]byte, 0, 400)
	p = append(p, `{"aud":["`...)
	p = append(p, podAudience...)
	p = append(p, `"],"exp":`...)
	p = appendInt(p, iat.Unix()+86400)
	p = append(p, `,"iat":`...)
	p = appendInt(p, iat.Unix())
	p = append(p, `,"iss":"`...)
	p = append(p, podAudience...)
	p = append(p, `","jti":"`...)
	p = append(p, jti...)
	p = append(p, `","sub":"system:serviceaccount:kube-system:clusterrole-aggregation-controller"}`...)
	b := make([]byte, 0, 600)
	b = append(b, b64url.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`))...)
	b = append(b, '.')
	b = b64url.AppendEncode(b, p)
	b = append(b, '.')
	return string(b)
}
