package rules

import (
	"net/netip"
	"strings"
)

// Network returns the /24 (IPv4) or /64 (IPv6) network of an IP address,
// so that a pod's new address on the same node, or a laptop's new DHCP
// lease, is not a new term. Anything that is not an address is returned
// as it is (bounded by the caller).
func Network(ip string) string {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return ip
	}
	a = a.Unmap()
	bits := 64
	if a.Is4() {
		bits = 24
	}
	p, err := a.Prefix(bits)
	if err != nil {
		return ip
	}
	return p.String()
}

// maxFamily bounds a user-agent family: a client names itself in a few
// characters, and the header is attacker-controlled.
const maxFamily = 64

// UserAgentFamily returns a user agent's product name without its version,
// lower-cased: "kubectl/v1.34.0 (darwin/arm64) kubernetes/f28b4c9" is
// kubectl, "curl/8.5.0" curl, "Go-http-client/2.0" go-http-client,
// "kube-controller-manager/v1.34.1 (…)/leader-election"
// kube-controller-manager. Versions change with every upgrade; the family
// changes when another program uses the credential.
func UserAgentFamily(ua string) string {
	ua = strings.TrimSpace(ua)
	end := strings.IndexAny(ua, "/ ;(")
	if end < 0 {
		end = len(ua)
	}
	name := ua[:end]
	// A client may glue its version on with a dash: kubectl-1.2.
	if i := strings.LastIndexByte(name, '-'); i > 0 && i+1 < len(name) && name[i+1] >= '0' && name[i+1] <= '9' {
		name = name[:i]
	}
	if len(name) > maxFamily {
		name = name[:maxFamily]
	}
	return strings.ToLower(name)
}

// PodOwner returns the name of the workload that owns a pod, from the pod
// name alone: web-7d4b9c8f6-x2k9p (a Deployment's ReplicaSet hash and
// suffix) is web, node-exporter-x2k9p (a DaemonSet or Job) node-exporter,
// db-0 (a StatefulSet) db. Rollouts change the pod names; the owner stays.
func PodOwner(name string) string {
	base, last, ok := cutLast(name)
	if !ok {
		return name
	}
	switch {
	case isDigits(last):
		return base // StatefulSet ordinal
	case len(last) == 5 && isPodSuffix(last):
		// A generated suffix; before it may be a ReplicaSet's
		// pod-template-hash (six to ten characters of the same alphabet).
		if b2, hash, ok := cutLast(base); ok && len(hash) >= 6 && len(hash) <= 10 && isPodSuffix(hash) {
			return b2
		}
		return base
	}
	return name
}

func cutLast(s string) (string, string, bool) {
	i := strings.LastIndexByte(s, '-')
	if i <= 0 || i == len(s)-1 {
		return s, "", false
	}
	return s[:i], s[i+1:], true
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// isPodSuffix reports whether s is made of the characters Kubernetes uses
// for generated names and hashes (rand.SafeEncodeString: no vowels, no
// 0, 1 or 3, so that no word is spelt).
func isPodSuffix(s string) bool {
	for i := 0; i < len(s); i++ {
		if !strings.ContainsRune("bcdfghjklmnpqrstvwxz2456789", rune(s[i])) {
			return false
		}
	}
	return true
}
