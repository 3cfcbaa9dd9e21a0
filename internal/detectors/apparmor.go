package detectors

import (
	"bytes"
	"errors"
	"fmt"
	"path"
	"sort"
	"strings"

	"k8s.io/apimachinery/pkg/runtime"

	"github.com/auditpipe/auditpipe/internal/pipeline"
)

// AppArmorDetectorID is the id of the apparmor-unconfined detector.
const AppArmorDetectorID = "apparmor-unconfined"

// apparmorMITRE is T1611 Escape to Host: every finding here is a container
// shedding a confinement layer that stands between it and the node.
const apparmorMITRE = "T1611"

// Kinds of findings; each is part of a finding's discriminator.
const (
	apparmorKindUnconfined        = "apparmor-unconfined"
	apparmorKindLocalhost         = "apparmor-localhost-not-allowed"
	apparmorKindWeakerEphemeral   = "apparmor-weaker-ephemeral"
	apparmorKindSeccompUnconfined = "seccomp-unconfined"
	apparmorKindSeccompEphemeral  = "seccomp-weaker-ephemeral"
)

// Annotations read by the detector.
const (
	// apparmorAnnotationPrefix + container name is the deprecated (1.30)
	// per-container AppArmor annotation; k8s.io/api/core/v1 calls it
	// DeprecatedAppArmorBetaContainerAnnotationKeyPrefix.
	apparmorAnnotationPrefix = "container.apparmor.security.beta.kubernetes.io/"
	// apparmorPSAViolations is the audit annotation Pod Security admission
	// adds in audit mode; its text names "forbidden AppArmor profile" or
	// "seccompProfile" when those are the cause.
	apparmorPSAViolations = "pod-security.kubernetes.io/audit-violations"
)

// Profile types shared by appArmorProfile and seccompProfile.
const (
	apparmorUnconfined     = "Unconfined"
	apparmorRuntimeDefault = "RuntimeDefault"
	apparmorLocalhost      = "Localhost"
)

// AppArmorConfig configures apparmor-unconfined (KEP-24): containers that
// run without AppArmor or seccomp confinement, set in pods or workload
// templates.
//
// Seccomp is read from the securityContext fields only: the kubelet stopped
// honouring the seccomp.security.alpha annotations in 1.25 and the apiserver
// stopped syncing them in 1.27.
type AppArmorConfig struct {
	// ExemptNamespaces are never reported. Default: kube-system, where CNI,
	// CSI and kube-proxy legitimately run unconfined. Add the namespaces of
	// your node agents (e.g. calico-system) rather than exempting broadly.
	ExemptNamespaces []string `json:"exempt_namespaces"`
	// AllowedServiceAccounts are "namespace/name" service accounts whose
	// pods are never reported (CNI, CSI, node agents outside exempt
	// namespaces). The name may be a path.Match glob ("monitoring/*").
	// Default empty.
	AllowedServiceAccounts []string `json:"allowed_service_accounts"`
	// AllowedLocalhostProfiles, when not empty, are the AppArmor profile
	// names (path.Match globs) pods may load with type Localhost; any other
	// Localhost profile is reported. Default empty: not checked.
	AllowedLocalhostProfiles []string `json:"allowed_localhost_profiles"`
}

// defaultAppArmorConfig is the section's default; see AppArmorConfig.
func defaultAppArmorConfig() AppArmorConfig {
	return AppArmorConfig{ExemptNamespaces: []string{"kube-system"}}
}

// validate reports every bad entry, each named by its key under prefix.
func (c AppArmorConfig) validate(prefix string) error {
	var errs []error
	for i, ns := range c.ExemptNamespaces {
		if ns == "" {
			errs = append(errs, fmt.Errorf("%s.exempt_namespaces[%d] is empty", prefix, i))
		}
	}
	for i, sa := range c.AllowedServiceAccounts {
		ns, name, ok := strings.Cut(sa, "/")
		if !ok || ns == "" || name == "" || strings.Contains(name, "/") {
			errs = append(errs, fmt.Errorf("%s.allowed_service_accounts[%d]: %q: want namespace/name", prefix, i, sa))
			continue
		}
		if _, err := path.Match(sa, ""); err != nil {
			errs = append(errs, fmt.Errorf("%s.allowed_service_accounts[%d]: %q: %w", prefix, i, sa, err))
		}
	}
	for i, p := range c.AllowedLocalhostProfiles {
		if p == "" {
			errs = append(errs, fmt.Errorf("%s.allowed_localhost_profiles[%d] is empty", prefix, i))
			continue
		}
		if _, err := path.Match(p, ""); err != nil {
			errs = append(errs, fmt.Errorf("%s.allowed_localhost_profiles[%d]: %q: %w", prefix, i, p, err))
		}
	}
	return errors.Join(errs...)
}

// buildAppArmor builds the detector for New.
func buildAppArmor(cfg Config) ([]Detector, error) {
	d, err := NewAppArmor(cfg.AppArmorUnconfined)
	if err != nil {
		return nil, err
	}
	return []Detector{d}, nil
}

// AppArmor is the apparmor-unconfined detector. It keeps no state and is
// safe for concurrent use.
type AppArmor struct {
	exempt           map[string]struct{}
	allowedSAs       []string
	allowedLocalhost []string
	// decodeAll turns apparmorRawMayFire off, for the test that holds it
	// to the decoded check.
	decodeAll bool
}

var _ Detector = (*AppArmor)(nil)

// NewAppArmor builds the detector.
func NewAppArmor(cfg AppArmorConfig) (*AppArmor, error) {
	if err := cfg.validate("apparmor_unconfined"); err != nil {
		return nil, err
	}
	d := &AppArmor{
		exempt:           make(map[string]struct{}, len(cfg.ExemptNamespaces)),
		allowedSAs:       cfg.AllowedServiceAccounts,
		allowedLocalhost: cfg.AllowedLocalhostProfiles,
	}
	for _, ns := range cfg.ExemptNamespaces {
		d.exempt[ns] = struct{}{}
	}
	return d, nil
}

// ID returns "apparmor-unconfined".
func (d *AppArmor) ID() string { return AppArmorDetectorID }

// apparmorProfile is a container's effective profile and where it was set.
type apparmorProfile struct {
	// Type is Unconfined, RuntimeDefault, Localhost, or "" when unset (the
	// runtime default applies).
	Type      string
	Localhost string
	// Field is the JSON path that set it, Value what was written there.
	Field, Value string
}

// rank orders AppArmor profiles by strength: Unconfined < runtime
// default (explicit or unset) < Localhost (a profile written for the
// workload).
func (p apparmorProfile) rank() int {
	switch p.Type {
	case apparmorUnconfined:
		return 0
	case apparmorLocalhost:
		return 2
	}
	return 1
}

// seccompRank is rank for seccomp, where unset counts as Unconfined: that
// is what the kubelet applies unless it runs with --seccomp-default.
func (p apparmorProfile) seccompRank() int {
	if p.Type == "" {
		return 0
	}
	return p.rank()
}

// String renders the profile for a summary.
func (p apparmorProfile) String() string {
	switch p.Type {
	case "":
		return "runtime default (unset)"
	case apparmorLocalhost:
		return "Localhost " + p.Localhost
	}
	return p.Type
}

// apparmorContainer is one container being judged.
type apparmorContainer struct {
	Name  string
	Field string // "containers", …, or "" for one only named by an annotation
	// Path is the container's JSON path, for profiles it leaves unset.
	Path       string
	AppArmor   apparmorProfile
	Seccomp    apparmorProfile
	Privileged bool
}

// Detect reports containers of pods and workload templates written by ev
// that run AppArmor- or seccomp-unconfined, load a Localhost AppArmor
// profile outside the allowlist, or are ephemeral containers injected with
// a weaker profile than the pod's.
func (d *AppArmor) Detect(ev *pipeline.Event, out []pipeline.Finding) []pipeline.Finding {
	t, ok := podSpecMatch(ev)
	if !ok {
		return out
	}
	// Report the creator's intent from the request: in 1.30 and 1.31 the
	// apiserver copies the appArmorProfile fields to the deprecated
	// annotation and back, so the response shows settings nobody wrote.
	// On ephemeralcontainers the response is better: it is the whole pod,
	// which the weaker-than-the-pod comparison needs, and the sync does
	// not touch what the request added.
	prefer := pipeline.FromRequest
	if t.ephemeral {
		prefer = pipeline.FromResponse
	}
	if !d.decodeAll && !apparmorRawMayFire(ev.RequestObject) && !apparmorResponseMayFire(ev, t) {
		// Whichever body podSpecDecode picks, apparmorMayFire is false.
		return out
	}
	o, ok := podSpecDecode(ev, t, prefer)
	if !ok {
		return out
	}
	if o.Spec.OS != nil && o.Spec.OS.Name == "windows" {
		return out
	}
	if !apparmorMayFire(o) {
		return out
	}
	return d.judgeObject(ev, o, t, out)
}

// judgeObject judges the pod spec Detect read, unless its namespace or
// service account is exempt.
func (d *AppArmor) judgeObject(ev *pipeline.Event, o *podSpecObject, t podSpecTarget, out []pipeline.Finding) []pipeline.Finding {
	if _, ok := d.exempt[o.Namespace]; ok {
		return out
	}
	sa := o.podSpecServiceAccount()
	for _, p := range d.allowedSAs {
		if ok, _ := path.Match(p, sa); ok {
			return out
		}
	}

	var podAA, podSC apparmorProfile
	if sc := o.Spec.SecurityContext; sc != nil {
		podAA = apparmorFromField(sc.AppArmorProfile, o.SpecPath+".securityContext.appArmorProfile")
		podSC = apparmorFromField(sc.SeccompProfile, o.SpecPath+".securityContext.seccompProfile")
	}
	cs := d.containers(o, podAA, podSC)
	// weakest is the weakest profile among the pod's regular containers,
	// against which an injected ephemeral container is compared.
	weakestAA, weakestSC, haveRef := 3, 3, false
	for _, c := range cs {
		if c.Field == "containers" || c.Field == "initContainers" {
			weakestAA, weakestSC = min(weakestAA, c.AppArmor.rank()), min(weakestSC, c.Seccomp.seccompRank())
			haveRef = true
		}
	}
	for _, c := range cs {
		if t.ephemeral && c.Field != "ephemeralContainers" {
			continue
		}
		eph := c.Field == "ephemeralContainers" && haveRef
		out = d.judge(ev, o, c, eph, weakestAA, weakestSC, out)
	}
	return out
}

// apparmorMayFire reports whether o could yield a finding at all: some
// AppArmor profile, as a field or an annotation, is Unconfined or
// Localhost, some seccomp profile is Unconfined, or an ephemeral container
// may be weaker than the pod's. Most pods set none of these, and judging
// them would build every container's profiles and field paths for nothing.
// It only rules findings out: judge decides.
func apparmorMayFire(o *podSpecObject) bool {
	s := &o.Spec
	if len(s.EphemeralContainers) > 0 || apparmorContextMayFire(s.SecurityContext) {
		return true
	}
	for i := range s.Containers {
		if apparmorContextMayFire(s.Containers[i].SecurityContext) {
			return true
		}
	}
	for i := range s.InitContainers {
		if apparmorContextMayFire(s.InitContainers[i].SecurityContext) {
			return true
		}
	}
	for k, v := range o.Annotations {
		if strings.HasPrefix(k, apparmorAnnotationPrefix) && (v == "unconfined" || strings.HasPrefix(v, "localhost/")) {
			return true
		}
	}
	return false
}

// apparmorRawMayFire is apparmorMayFire before decoding: false only when
// no decoding of body can make it true. It may fire only on a string
// "Unconfined", "Localhost", "unconfined" or "localhost/..." or on an
// ephemeralContainers member. Of JSON's escapes only \uXXXX yields a
// letter (invalid UTF-8 becomes U+FFFD, never one), so without "\u" in
// the body every letter of a decoded string is in its raw bytes; other
// escapes (managedFields' k:{\"uid\":...} keys put \" in every stored
// object) do not matter. The request body of a pod, which AppArmor reads
// for intent, was otherwise decoded on every pod write for this detector
// alone: 4 % of detect scan's CPU on the realistic stream.
func apparmorRawMayFire(body *runtime.Unknown) bool {
	if body == nil {
		return false
	}
	raw := body.Raw
	return bytes.Contains(raw, []byte(`\u`)) ||
		bytes.Contains(raw, []byte("nconfined")) ||
		bytes.Contains(raw, []byte("ocalhost")) ||
		bytes.Contains(raw, []byte("phemeralContainers"))
}

// apparmorResponseMayFire is apparmorRawMayFire for the response body, or,
// once it is decoded (unsecured-image-pull, which runs first, reads it on
// most pod writes), apparmorMayFire of its pod-spec view, which is then
// cheaper than searching its raw bytes (a stored object's are several KiB).
func apparmorResponseMayFire(ev *pipeline.Event, t podSpecTarget) bool {
	if ev.BodyDecoded(pipeline.FromResponse) {
		o, ok := podSpecView(ev, t, pipeline.FromResponse)
		return ok && apparmorMayFire(o)
	}
	return apparmorRawMayFire(ev.ResponseObject)
}

// apparmorContextMayFire is apparmorMayFire for one security context.
func apparmorContextMayFire(sc *podSpecSecurityContext) bool {
	if sc == nil {
		return false
	}
	if p := sc.AppArmorProfile; p != nil && (p.Type == apparmorUnconfined || p.Type == apparmorLocalhost) {
		return true
	}
	return sc.SeccompProfile != nil && sc.SeccompProfile.Type == apparmorUnconfined
}

// containers lists every container with its effective profiles. A patch
// may set the pod-level profile or a container's annotation without
// listing containers: those still yield an entry (named "" for the pod
// level) so the intent is reported.
func (d *AppArmor) containers(o *podSpecObject, podAA, podSC apparmorProfile) []apparmorContainer {
	refs := o.Spec.podSpecContainers()
	cs := make([]apparmorContainer, 0, len(refs)+1)
	seen := make(map[string]struct{}, len(refs))
	for _, r := range refs {
		c := apparmorContainer{Name: r.C.Name, Field: r.Field, Path: r.podSpecPath(o.SpecPath, "")}
		seen[r.C.Name] = struct{}{}
		var ctrAA, ctrSC apparmorProfile
		if sc := r.C.SecurityContext; sc != nil {
			ctrAA = apparmorFromField(sc.AppArmorProfile, r.podSpecPath(o.SpecPath, "securityContext.appArmorProfile"))
			ctrSC = apparmorFromField(sc.SeccompProfile, r.podSpecPath(o.SpecPath, "securityContext.seccompProfile"))
			c.Privileged = sc.Privileged != nil && *sc.Privileged
		}
		// Precedence as the kubelet applies it: container field, then the
		// container's annotation, then the pod field.
		c.AppArmor = ctrAA
		if c.AppArmor.Type == "" {
			c.AppArmor = apparmorFromAnnotation(o, r.C.Name)
		}
		if c.AppArmor.Type == "" {
			c.AppArmor = podAA
		}
		c.Seccomp = ctrSC
		if c.Seccomp.Type == "" {
			c.Seccomp = podSC
		}
		cs = append(cs, c)
	}
	// Annotations for containers the body does not list (a patch), in a
	// stable order so findings come out the same on redelivery.
	var extra []string
	for k := range o.Annotations {
		if name, ok := strings.CutPrefix(k, apparmorAnnotationPrefix); ok {
			if _, dup := seen[name]; !dup {
				extra = append(extra, name)
			}
		}
	}
	sort.Strings(extra)
	for _, name := range extra {
		cs = append(cs, apparmorContainer{Name: name, AppArmor: apparmorFromAnnotation(o, name), Seccomp: podSC})
	}
	if len(refs) == 0 && (podAA.Type != "" || podSC.Type != "") {
		cs = append(cs, apparmorContainer{AppArmor: podAA, Seccomp: podSC})
	}
	return cs
}

// judge appends the findings about one container. eph is set for an
// ephemeral container of a pod whose regular containers are known, whose
// weakest profiles are weakestAA and weakestSC.
func (d *AppArmor) judge(ev *pipeline.Event, o *podSpecObject, c apparmorContainer, eph bool, weakestAA, weakestSC int, out []pipeline.Finding) []pipeline.Finding {
	aa := c.AppArmor
	switch {
	case aa.Type == apparmorUnconfined:
		f := d.finding(ev, o, c, apparmorKindUnconfined, pipeline.SeverityHigh, "runs AppArmor Unconfined", aa, eph && weakestAA > aa.rank())
		out = append(out, f)
	case aa.Type == apparmorLocalhost && len(d.allowedLocalhost) > 0 && !apparmorMatchAny(d.allowedLocalhost, aa.Localhost):
		f := d.finding(ev, o, c, apparmorKindLocalhost, pipeline.SeverityMedium,
			fmt.Sprintf("loads AppArmor profile %q, which is not in the allowlist", aa.Localhost), aa, false)
		out = append(out, f)
	case eph && aa.rank() < weakestAA:
		aa = apparmorUnsetAt(aa, c.Path+".securityContext.appArmorProfile")
		f := d.finding(ev, o, c, apparmorKindWeakerEphemeral, pipeline.SeverityMedium,
			fmt.Sprintf("was injected with AppArmor %s, weaker than the pod's containers", aa), aa, false)
		out = append(out, f)
	}
	sc := c.Seccomp
	switch {
	case sc.Type == apparmorUnconfined:
		f := d.finding(ev, o, c, apparmorKindSeccompUnconfined, pipeline.SeverityMedium, "runs seccomp Unconfined", sc, eph && weakestSC > sc.seccompRank())
		out = append(out, f)
	case eph && sc.seccompRank() < weakestSC:
		what := "seccomp " + sc.String()
		if sc.Type == "" {
			what = "no seccomp profile (Unconfined unless the kubelet runs with --seccomp-default)"
		}
		sc = apparmorUnsetAt(sc, c.Path+".securityContext.seccompProfile")
		f := d.finding(ev, o, c, apparmorKindSeccompEphemeral, pipeline.SeverityMedium,
			fmt.Sprintf("was injected with %s, weaker than the pod's containers", what), sc, false)
		out = append(out, f)
	}
	return out
}

// finding builds one finding. injected raises severity for an unconfined
// ephemeral container added to a pod that was confined.
func (d *AppArmor) finding(ev *pipeline.Event, o *podSpecObject, c apparmorContainer, kind string, sev pipeline.Severity,
	what string, p apparmorProfile, injected bool) pipeline.Finding {
	who := fmt.Sprintf("container %q", c.Name)
	if c.Name == "" {
		who = "pod-level profile"
	}
	summary := fmt.Sprintf("%s %s %s (%s)", o.podSpecWorkload(), who, what, p.Field)
	evidence := []pipeline.Evidence{
		{Field: p.Field, Value: p.Value, Source: o.Source},
		{Field: "serviceAccount", Value: o.podSpecServiceAccount(), Source: o.Source},
	}
	if injected {
		sev++
		summary += ", injected into a pod whose containers are confined"
	}
	if c.Privileged {
		sev++
		summary += ", and is privileged"
		evidence = append(evidence, pipeline.Evidence{Field: "securityContext.privileged", Value: "true", Source: o.Source})
	}
	if v := ev.Annotations[apparmorPSAViolations]; v != "" &&
		(strings.Contains(v, "AppArmor") && strings.HasPrefix(kind, "apparmor") || strings.Contains(v, "seccompProfile") && strings.HasPrefix(kind, "seccomp")) {
		evidence = append(evidence, pipeline.Evidence{Field: "annotations." + apparmorPSAViolations, Value: v, Source: pipeline.FromEvent})
	}
	// A rejected request ran nothing: still worth knowing someone tried,
	// but no more than low.
	if code := ev.Code(); code >= 400 {
		sev = pipeline.SeverityLow
		summary = fmt.Sprintf("rejected (HTTP %d): %s", code, summary)
		evidence = append(evidence, pipeline.Evidence{Field: "responseStatus.code", Value: fmt.Sprint(code), Source: pipeline.FromEvent})
	}
	f := pipeline.NewFinding(AppArmorDetectorID, ev, kind+":"+c.Name)
	f.Severity = podSpecClamp(sev)
	f.MITRE = apparmorMITRE
	f.Summary = summary
	f.Evidence = evidence
	return f
}

// apparmorUnsetAt gives an unset profile the field it would be set at, so
// evidence and summary can point to where it is missing.
func apparmorUnsetAt(p apparmorProfile, field string) apparmorProfile {
	if p.Field == "" {
		p.Field, p.Value = field+".type", "unset"
	}
	return p
}

// apparmorFromField reads an appArmorProfile or seccompProfile field.
func apparmorFromField(p *podSpecProfile, field string) apparmorProfile {
	if p == nil || p.Type == "" {
		return apparmorProfile{}
	}
	r := apparmorProfile{Type: p.Type, Field: field + ".type", Value: p.Type}
	if p.LocalhostProfile != nil {
		r.Localhost = *p.LocalhostProfile
		r.Value += " " + r.Localhost
	}
	return r
}

// apparmorFromAnnotation reads the deprecated AppArmor annotation of
// container name: "unconfined", "runtime/default", "localhost/<profile>",
// or "" (the runtime default). Values the apiserver would reject read as
// unset.
func apparmorFromAnnotation(o *podSpecObject, name string) apparmorProfile {
	key := apparmorAnnotationPrefix + name
	v, ok := o.Annotations[key]
	if !ok {
		return apparmorProfile{}
	}
	r := apparmorProfile{Field: o.MetaPath + ".annotations." + key, Value: v}
	switch {
	case v == "unconfined":
		r.Type = apparmorUnconfined
	case v == "runtime/default" || v == "":
		r.Type = apparmorRuntimeDefault
	case strings.HasPrefix(v, "localhost/") && len(v) > len("localhost/"):
		r.Type, r.Localhost = apparmorLocalhost, v[len("localhost/"):]
	default:
		return apparmorProfile{}
	}
	return r
}

// apparmorMatchAny reports whether name matches one of the globs.
func apparmorMatchAny(globs []string, name string) bool {
	for _, g := range globs {
		if ok, _ := path.Match(g, name); ok {
			return true
		}
	}
	return false
}
