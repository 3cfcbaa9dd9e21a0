package detectors

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/auditpipe/auditpipe/internal/jsonscan"
	"github.com/auditpipe/auditpipe/internal/pipeline"
)

// admissionDetectorID is the id of the admission-policy-change detector
// (KEP-3962 mutating admission policies, and the older admission controls
// around them).
const admissionDetectorID = "admission-policy-change"

// MITRE ATT&CK techniques the admission findings map to.
const (
	// admissionMITREImpair is Impair Defenses: Disable or Modify Tools.
	// Admission policies and webhooks are the cluster's preventive controls.
	admissionMITREImpair = "T1562.001"
	// admissionMITREIntercept is Adversary-in-the-Middle: a mutating webhook
	// nobody vetted rewrites API writes in flight.
	admissionMITREIntercept = "T1557"
)

// Annotation keys the apiserver's webhook dispatchers write
// (k8s.io/apiserver/pkg/admission/plugin/webhook/{mutating,validating}).
// The suffix is round_<r>_index_<i>.
const (
	admissionMutationPrefix        = "mutation.webhook.admission.k8s.io/"
	admissionPatchPrefix           = "patch.webhook.admission.k8s.io/"
	admissionFailedOpenMutating    = "failed-open.mutation.webhook.admission.k8s.io/"
	admissionFailedOpenValidating  = "failed-open.validating.webhook.admission.k8s.io/"
	admissionGroup                 = "admissionregistration.k8s.io"
	admissionPodSecurityEnforce    = "pod-security.kubernetes.io/enforce"
	admissionPodSecurityPrivileged = "privileged"
)

// admissionKind describes one admissionregistration.k8s.io resource.
type admissionKind struct {
	noun       string // for summaries
	validating bool   // a control whose removal lets requests through unchecked
	mutating   bool   // rewrites objects
	policy     bool   // a CEL policy whose mutations can be read
}

// admissionKinds are the resources this detector watches, all cluster-scoped.
var admissionKinds = map[string]admissionKind{
	"validatingadmissionpolicies":       {noun: "ValidatingAdmissionPolicy", validating: true, policy: true},
	"validatingadmissionpolicybindings": {noun: "ValidatingAdmissionPolicyBinding", validating: true},
	"validatingwebhookconfigurations":   {noun: "ValidatingWebhookConfiguration", validating: true},
	"mutatingadmissionpolicies":         {noun: "MutatingAdmissionPolicy", mutating: true, policy: true},
	"mutatingadmissionpolicybindings":   {noun: "MutatingAdmissionPolicyBinding", mutating: true},
	"mutatingwebhookconfigurations":     {noun: "MutatingWebhookConfiguration", mutating: true},
}

// AdmissionIdentities is the admin allowlist's shape: users, groups and
// username prefixes, as for the broad-selector allowlist.
type AdmissionIdentities = SelectorIdentities

// AdmissionConfig configures the admission-policy-change detector.
type AdmissionConfig struct {
	// AdminIdentities may create, change and delete admission policies,
	// bindings and webhook configurations without a finding (except
	// removing a validating control, see AdminRemovalSeverity). Default:
	// only the user system:apiserver, the apiserver's own loopback client.
	// The group system:masters is deliberately not a default: its
	// certificates cannot be revoked, and a stolen admin kubeconfig
	// disabling a policy is the case this detector exists for. Add your
	// GitOps controller (for example
	// system:serviceaccount:argocd:argocd-application-controller) and, if
	// used, cert-manager's cainjector.
	AdminIdentities AdmissionIdentities `json:"admin_identities"`
	// AllowedWebhooks may report "mutated": true without a finding, named
	// "<configuration>" (all its webhooks) or "<configuration>/<webhook>".
	// Default none: list your sidecar injectors, e.g.
	// istio-sidecar-injector.
	AllowedWebhooks []string `json:"allowed_webhooks"`
	// ProtectedResources are resources a policy or webhook matching them is
	// more dangerous for ("*" always counts). Default: pods, secrets,
	// serviceaccounts and the four RBAC resources.
	ProtectedResources []string `json:"protected_resources"`
	// Severity of a change by a non-admin. Default medium.
	Severity pipeline.Severity `json:"severity"`
	// AggravatedSeverity of a non-admin change that matches protected
	// resources, sets failurePolicy: Ignore, makes a binding advisory, or
	// removes a validating control. Default high.
	AggravatedSeverity pipeline.Severity `json:"aggravated_severity"`
	// InjectionSeverity of a non-admin mutating policy whose mutation writes
	// image, command, env, volumes, securityContext, serviceAccountName or
	// containers: code injection into every matching workload. Default
	// critical.
	InjectionSeverity pipeline.Severity `json:"injection_severity"`
	// AdminRemovalSeverity of an admin deleting a validating policy, binding
	// or webhook configuration. Default medium: a removed control stops
	// protecting silently, an admin credential is what an intruder disables
	// controls with, and legitimate removals are rare enough to confirm.
	AdminRemovalSeverity pipeline.Severity `json:"admin_removal_severity"`
	// AttemptSeverity of a change that did not happen (4xx/5xx or
	// dryRun). Default low.
	AttemptSeverity pipeline.Severity `json:"attempt_severity"`
	// FailedOpenSeverity of a webhook that failed open on a request; one
	// level higher when the request wrote a protected resource. Default
	// medium.
	FailedOpenSeverity pipeline.Severity `json:"failed_open_severity"`
	// MutationSeverity of an unlisted webhook mutating a request; one level
	// higher when its patch touches a pod's image, command, env, volumes,
	// securityContext, serviceAccountName or containers. Default medium.
	MutationSeverity pipeline.Severity `json:"mutation_severity"`
	// PodSecuritySeverity of a namespace's pod-security enforce label being
	// removed or set to privileged by a non-admin; one level lower for
	// admins and for full updates, where the earlier value is not visible.
	// Default high.
	PodSecuritySeverity pipeline.Severity `json:"pod_security_severity"`
}

// defaultAdmissionConfig is the admission_policy_change section of
// DefaultConfig.
func defaultAdmissionConfig() AdmissionConfig {
	return AdmissionConfig{
		AdminIdentities: AdmissionIdentities{Users: []string{"system:apiserver"}},
		ProtectedResources: []string{
			"pods", "secrets", "serviceaccounts",
			"roles", "rolebindings", "clusterroles", "clusterrolebindings",
		},
		Severity:             pipeline.SeverityMedium,
		AggravatedSeverity:   pipeline.SeverityHigh,
		InjectionSeverity:    pipeline.SeverityCritical,
		AdminRemovalSeverity: pipeline.SeverityMedium,
		AttemptSeverity:      pipeline.SeverityLow,
		FailedOpenSeverity:   pipeline.SeverityMedium,
		MutationSeverity:     pipeline.SeverityMedium,
		PodSecuritySeverity:  pipeline.SeverityHigh,
	}
}

// validate reports every problem in c, each naming its key under prefix.
func (c AdmissionConfig) validate(prefix string) error {
	var errs []error
	for i, w := range c.AllowedWebhooks {
		if strings.TrimSpace(w) == "" || strings.Count(w, "/") > 1 {
			errs = append(errs, fmt.Errorf("%s.allowed_webhooks[%d] %q must be \"configuration\" or \"configuration/webhook\"", prefix, i, w))
		}
	}
	for i, r := range c.ProtectedResources {
		if strings.TrimSpace(r) == "" || strings.Contains(r, "/") {
			errs = append(errs, fmt.Errorf("%s.protected_resources[%d] %q must be a plain resource name", prefix, i, r))
		}
	}
	errs = append(errs,
		c.AdminIdentities.validate(prefix+".admin_identities"),
		selectorValidateSeverity(prefix+".severity", c.Severity),
		selectorValidateSeverity(prefix+".aggravated_severity", c.AggravatedSeverity),
		selectorValidateSeverity(prefix+".injection_severity", c.InjectionSeverity),
		selectorValidateSeverity(prefix+".admin_removal_severity", c.AdminRemovalSeverity),
		selectorValidateSeverity(prefix+".attempt_severity", c.AttemptSeverity),
		selectorValidateSeverity(prefix+".failed_open_severity", c.FailedOpenSeverity),
		selectorValidateSeverity(prefix+".mutation_severity", c.MutationSeverity),
		selectorValidateSeverity(prefix+".pod_security_severity", c.PodSecuritySeverity),
	)
	return errors.Join(errs...)
}

// buildAdmission builds the admission-policy-change detector; its config
// was validated by Config.Validate, so it cannot fail.
func buildAdmission(cfg Config) ([]Detector, error) {
	return []Detector{newAdmissionDetector(cfg.AdmissionPolicy)}, nil
}

// admissionDetector flags changes to admission controls, webhooks that
// failed open or mutated without being vetted, and namespaces whose pod
// security enforcement was lowered. It is stateless.
type admissionDetector struct {
	cfg       AdmissionConfig
	admins    *selectorIdentitySet
	webhooks  map[string]struct{}
	protected map[string]struct{}
}

var _ Detector = (*admissionDetector)(nil)

func newAdmissionDetector(cfg AdmissionConfig) *admissionDetector {
	d := &admissionDetector{
		cfg:       cfg,
		admins:    newSelectorIdentitySet(cfg.AdminIdentities),
		webhooks:  make(map[string]struct{}, len(cfg.AllowedWebhooks)),
		protected: make(map[string]struct{}, len(cfg.ProtectedResources)),
	}
	for _, w := range cfg.AllowedWebhooks {
		d.webhooks[w] = struct{}{}
	}
	for _, r := range cfg.ProtectedResources {
		d.protected[r] = struct{}{}
	}
	return d
}

// ID implements Detector.
func (d *admissionDetector) ID() string { return admissionDetectorID }

// Detect implements Detector. Webhook annotations can ride on any event; the
// other rules only look at writes, so reads return after a few comparisons.
func (d *admissionDetector) Detect(ev *pipeline.Event, out []pipeline.Finding) []pipeline.Finding {
	if len(ev.Annotations) > 0 {
		out = d.detectAnnotations(ev, out)
	}
	ref := ev.ObjectRef
	if ref == nil || ref.Subresource != "" {
		return out
	}
	switch ev.Verb {
	case "create", "update", "patch", "delete", "deletecollection":
	default:
		return out
	}
	switch {
	case ref.APIGroup == admissionGroup:
		if kind, ok := admissionKinds[ref.Resource]; ok {
			out = d.detectChange(ev, kind, out)
		}
	case ref.APIGroup == "" && ref.Resource == "namespaces" && (ev.Verb == "update" || ev.Verb == "patch"):
		out = d.detectPodSecurity(ev, out)
	}
	return out
}

// detectAnnotations reports failed-open webhooks and unvetted mutations.
// Keys are visited in sorted order so findings come out the same way on
// every delivery.
func (d *admissionDetector) detectAnnotations(ev *pipeline.Event, out []pipeline.Finding) []pipeline.Finding {
	var keys []string
	for k, v := range ev.Annotations {
		switch {
		case strings.HasPrefix(k, admissionFailedOpenMutating), strings.HasPrefix(k, admissionFailedOpenValidating):
			keys = append(keys, k)
		case strings.HasPrefix(k, admissionMutationPrefix) && strings.Contains(v, `"mutated":true`):
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		return out
	}
	sort.Strings(keys)
	for _, k := range keys {
		if suffix, ok := strings.CutPrefix(k, admissionMutationPrefix); ok {
			out = d.mutationFinding(ev, k, suffix, out)
			continue
		}
		out = append(out, d.failedOpenFinding(ev, k))
	}
	return out
}

// admissionWritesProtected reports whether ev is a write to a protected
// resource, the requests a failed-open control matters most for.
func (d *admissionDetector) admissionWritesProtected(ev *pipeline.Event) bool {
	if ev.ObjectRef == nil {
		return false
	}
	switch ev.Verb {
	case "create", "update", "patch":
	default:
		return false
	}
	_, ok := d.protected[ev.ObjectRef.Resource]
	return ok
}

func (d *admissionDetector) failedOpenFinding(ev *pipeline.Event, key string) pipeline.Finding {
	kind := "validating"
	if strings.HasPrefix(key, admissionFailedOpenMutating) {
		kind = "mutating"
	}
	sev := d.cfg.FailedOpenSeverity
	if d.admissionWritesProtected(ev) {
		sev = selectorRaise(sev)
	}
	f := pipeline.NewFinding(admissionDetectorID, ev, key)
	f.Severity = sev
	f.MITRE = admissionMITREImpair
	f.Summary = fmt.Sprintf("%s webhook %q failed open on %s %s by %s: the request was admitted without its check",
		kind, ev.Annotations[key], ev.Verb, admissionObject(ev), selectorActor(ev))
	f.Evidence = []pipeline.Evidence{{Field: "annotations." + key, Value: ev.Annotations[key], Source: pipeline.FromEvent}}
	return f
}

// admissionMutation is the value of a mutation.webhook.admission.k8s.io
// annotation.
type admissionMutation struct {
	Configuration string
	Webhook       string
	Mutated       bool
}

// admissionPatchOp is one JSON patch operation, as webhooks return them and
// as the patch annotation records them; its value is not read.
type admissionPatchOp struct {
	Op   string
	Path string
}

// The annotation readers below read what json.Unmarshal into the structs
// above read, keys matched as it matches them (bytes.EqualFold), without
// reflection: a cluster with mutating webhooks has these annotations on
// every pod write. Any error json.Unmarshal would return (malformed JSON,
// trailing data, a member of the wrong type) makes the value unreadable.

// admissionReadMutation reads a mutation annotation's value.
func admissionReadMutation(raw string) (m admissionMutation, ok bool) {
	d := jsonscan.Scanner{Data: []byte(raw)}
	err := admissionJSONObject(&d, 0, func(key []byte) error {
		switch {
		case bytes.EqualFold(key, []byte("configuration")):
			return d.StringOrNull(&m.Configuration, 1, "configuration")
		case bytes.EqualFold(key, []byte("webhook")):
			return d.StringOrNull(&m.Webhook, 1, "webhook")
		case bytes.EqualFold(key, []byte("mutated")):
			return admissionBoolOrNull(&d, &m.Mutated, "mutated")
		}
		return d.Skip(1)
	})
	return m, err == nil
}

// admissionReadPatch reads the patch member of a patch annotation's value.
func admissionReadPatch(raw string) (ops []admissionPatchOp, ok bool) {
	d := jsonscan.Scanner{Data: []byte(raw)}
	err := admissionJSONObject(&d, 0, func(key []byte) error {
		if !bytes.EqualFold(key, []byte("patch")) {
			return d.Skip(1)
		}
		c, err := d.Peek()
		if err != nil {
			return err
		}
		switch c {
		case 'n':
			ops = nil
			return d.Literal()
		case '[':
		default:
			return d.Mismatch(1, "patch", "array")
		}
		ops = ops[:0]
		more, err := d.ArrayStart()
		for ; err == nil && more; more, err = d.ArrayNext() {
			var op admissionPatchOp
			err = admissionJSONObject(&d, 2, func(key []byte) error {
				switch {
				case bytes.EqualFold(key, []byte("op")):
					return d.StringOrNull(&op.Op, 3, "patch.op")
				case bytes.EqualFold(key, []byte("path")):
					return d.StringOrNull(&op.Path, 3, "patch.path")
				}
				return d.Skip(3)
			})
			if err != nil {
				return err
			}
			ops = append(ops, op)
		}
		return err
	})
	return ops, err == nil
}

// admissionJSONObject reads the object at d.Pos, calling member with each key
// and d at its value, which member must consume. null reads as an object
// without members; at depth 0 the value must be all of d.Data.
func admissionJSONObject(d *jsonscan.Scanner, depth int, member func(key []byte) error) error {
	c, err := d.Peek()
	if err != nil {
		return err
	}
	switch c {
	case 'n':
		err = d.Literal()
	case '{':
		var more bool
		more, err = d.ObjectStart()
		for ; err == nil && more; more, err = d.ObjectNext() {
			var key []byte
			if key, err = d.Key(); err != nil {
				break
			}
			if _, err = d.Peek(); err != nil {
				break
			}
			if err = member(key); err != nil {
				break
			}
		}
	default:
		err = d.Mismatch(depth, "", "object")
	}
	if err == nil && depth == 0 {
		d.WS()
		if d.Pos != len(d.Data) {
			err = d.Syntax("after top-level value")
		}
	}
	return err
}

// admissionBoolOrNull reads a bool member; null leaves dst as it was.
func admissionBoolOrNull(d *jsonscan.Scanner, dst *bool, field string) error {
	switch d.Data[d.Pos] {
	case 't', 'f', 'n':
		c := d.Data[d.Pos]
		if err := d.Literal(); err != nil {
			return err
		}
		if c != 'n' {
			*dst = c == 't'
		}
		return nil
	}
	return d.Mismatch(1, field, "bool")
}

func (d *admissionDetector) mutationFinding(ev *pipeline.Event, key, suffix string, out []pipeline.Finding) []pipeline.Finding {
	m, ok := admissionReadMutation(ev.Annotations[key])
	if !ok || !m.Mutated {
		return out
	}
	if _, ok := d.webhooks[m.Configuration]; ok {
		return out
	}
	if _, ok := d.webhooks[m.Configuration+"/"+m.Webhook]; ok {
		return out
	}
	f := pipeline.NewFinding(admissionDetectorID, ev, key)
	f.Severity = d.cfg.MutationSeverity
	f.MITRE = admissionMITREIntercept
	f.Evidence = []pipeline.Evidence{{Field: "annotations." + key, Value: ev.Annotations[key], Source: pipeline.FromEvent}}
	touched := ""
	// The patch itself is only recorded at Request level and above.
	patchKey := admissionPatchPrefix + suffix
	if raw, ok := ev.Annotations[patchKey]; ok {
		if patch, ok := admissionReadPatch(raw); ok {
			var facts admissionFacts
			for _, op := range patch {
				facts.touchPath(op.Op, op.Path)
			}
			if len(facts.touched) > 0 {
				f.Severity = selectorRaise(f.Severity)
				touched = "; its patch writes " + strings.Join(facts.touchedSorted(), ", ")
			}
		}
		f.Evidence = append(f.Evidence, pipeline.Evidence{Field: "annotations." + patchKey, Value: raw, Source: pipeline.FromEvent})
	}
	f.Summary = fmt.Sprintf("webhook %s/%s, not on the allowlist, mutated %s %s by %s%s",
		m.Configuration, m.Webhook, ev.Verb, admissionObject(ev), selectorActor(ev), touched)
	return append(out, f)
}

// admissionObject names the object of a request for a summary.
func admissionObject(ev *pipeline.Event) string {
	ref := ev.ObjectRef
	if ref == nil {
		return ev.RequestURI
	}
	s := ref.Resource
	if ref.Subresource != "" {
		s += "/" + ref.Subresource
	}
	switch {
	case ref.Namespace != "" && ref.Name != "":
		s += " " + ref.Namespace + "/" + ref.Name
	case ref.Name != "":
		s += " " + ref.Name
	case ref.Namespace != "":
		s += " in " + ref.Namespace
	}
	return s
}

// admissionAttempt says why a write did not take effect, or "".
func admissionAttempt(ev *pipeline.Event) string {
	if code := ev.Code(); code >= 400 {
		return fmt.Sprintf("attempted (refused, %d)", code)
	}
	if strings.Contains(ev.RequestURI, "dryRun=") {
		return "attempted (dry run)"
	}
	return ""
}

// detectChange judges a write to an admission policy, binding or webhook
// configuration.
func (d *admissionDetector) detectChange(ev *pipeline.Event, kind admissionKind, out []pipeline.Finding) []pipeline.Finding {
	admin := d.admins.allows(ev)
	attempt := admissionAttempt(ev)
	deleting := ev.Verb == "delete" || ev.Verb == "deletecollection"
	if admin && (attempt != "" || !deleting || !kind.validating) {
		return out
	}

	f := pipeline.NewFinding(admissionDetectorID, ev, "change")
	f.MITRE = admissionMITREImpair
	if kind.mutating && !deleting {
		f.MITRE = admissionMITREIntercept
	}
	f.Evidence = append(f.Evidence,
		pipeline.Evidence{Field: "verb", Value: ev.Verb, Source: pipeline.FromEvent},
		pipeline.Evidence{Field: "objectRef.resource", Value: ev.ObjectRef.Resource, Source: pipeline.FromEvent},
	)
	target := kind.noun
	if name := ev.ObjectRef.Name; name != "" {
		target += " " + name
	} else if deleting {
		target = "every matching " + kind.noun
	}

	var sev pipeline.Severity
	var why []string
	switch {
	case deleting && kind.validating && admin:
		sev = d.cfg.AdminRemovalSeverity
		why = append(why, "a validating control removed (admin)")
	case deleting && kind.validating:
		sev = d.cfg.AggravatedSeverity
		why = append(why, "a validating control removed")
	case deleting:
		sev = d.cfg.Severity
	default:
		sev = d.cfg.Severity
		facts, source, ok := d.readBody(ev, kind)
		if !ok {
			why = append(why, "body not audited (Metadata level)")
			break
		}
		if len(facts.protected) > 0 {
			sev = d.cfg.AggravatedSeverity
			why = append(why, "matches "+strings.Join(facts.protectedSorted(), ", "))
			f.Evidence = append(f.Evidence, pipeline.Evidence{Field: "rules.resources", Value: strings.Join(facts.protectedSorted(), ","), Source: source})
		}
		if len(facts.failOpen) > 0 {
			sev = d.cfg.AggravatedSeverity
			why = append(why, "failurePolicy: Ignore")
			f.Evidence = append(f.Evidence, pipeline.Evidence{Field: facts.failOpen[0], Value: "Ignore", Source: source})
		}
		if facts.advisory {
			sev = d.cfg.AggravatedSeverity
			why = append(why, "validationActions without Deny")
			f.Evidence = append(f.Evidence, pipeline.Evidence{Field: "spec.validationActions", Value: facts.actions, Source: source})
		}
		if len(facts.touched) > 0 {
			sev = d.cfg.InjectionSeverity
			why = append(why, "mutation writes "+strings.Join(facts.touchedSorted(), ", "))
			f.Evidence = append(f.Evidence, pipeline.Evidence{Field: "spec.mutations", Value: strings.Join(facts.touchedSorted(), ","), Source: source})
		}
		why = append(why, "read from the "+source+" body")
	}
	if attempt != "" {
		sev = d.cfg.AttemptSeverity
	}
	f.Severity = sev

	verb := ev.Verb + "d"
	switch ev.Verb {
	case "patch":
		verb = "patched"
	case "deletecollection":
		verb = "deleted"
	}
	if attempt != "" {
		verb = attempt + " to " + ev.Verb
	}
	who := selectorActor(ev)
	if !admin {
		who += ", not an admission admin,"
	}
	f.Summary = fmt.Sprintf("%s %s %s", who, verb, target)
	if len(why) > 0 {
		f.Summary += ": " + strings.Join(why, "; ")
	}
	return append(out, f)
}

// readBody analyses the response body (the stored object, after defaulting)
// if audited, else the request body (what the client sent, for a patch the
// patch document), and says which it read.
func (d *admissionDetector) readBody(ev *pipeline.Event, kind admissionKind) (admissionFacts, string, bool) {
	for _, b := range [...]struct {
		raw    []byte
		source string
	}{
		{selectorRaw(ev.ResponseObject), pipeline.FromResponse},
		{selectorRaw(ev.RequestObject), pipeline.FromRequest},
	} {
		if len(b.raw) == 0 {
			continue
		}
		// Decoded once per event, shared with every other reader. nil is
		// a body that does not decode, or the JSON literal null, which
		// decodes to nil and is walked as before.
		v := bodyDecoded(ev, b.source)
		if v == nil && !bytes.Equal(bytes.TrimSpace(b.raw), []byte("null")) {
			continue
		}
		if m, ok := v.(map[string]any); ok && m["kind"] == "Status" {
			continue // a delete's or failure's response, not the object
		}
		facts := admissionFacts{protectedSet: d.protected}
		facts.walk(v, "", "", false)
		if !kind.policy {
			facts.touched = nil // only CEL mutations are readable
		}
		return facts, b.source, true
	}
	return admissionFacts{}, "", false
}

// admissionTouchWords are the pod fields whose mutation amounts to code
// injection or privilege change, as they appear as CEL identifiers or JSON
// patch path segments.
var admissionTouchWords = map[string]string{
	"image":               "image",
	"command":             "command",
	"args":                "command",
	"env":                 "env",
	"envFrom":             "env",
	"volumes":             "volumes",
	"volumeMounts":        "volumes",
	"hostPath":            "volumes",
	"securityContext":     "securityContext",
	"privileged":          "securityContext",
	"capabilities":        "securityContext",
	"hostNetwork":         "securityContext",
	"hostPID":             "securityContext",
	"hostIPC":             "securityContext",
	"serviceAccountName":  "serviceAccountName",
	"serviceAccount":      "serviceAccountName",
	"initContainers":      "containers",
	"ephemeralContainers": "containers",
}

// admissionFacts accumulates what a policy, binding or webhook body says.
type admissionFacts struct {
	protectedSet map[string]struct{}
	protected    map[string]struct{}
	failOpen     []string // paths set to failurePolicy: Ignore
	touched      map[string]struct{}
	advisory     bool   // a binding whose validationActions lack Deny
	actions      string // those validationActions
}

func (a *admissionFacts) protectedSorted() []string { return admissionSortedKeys(a.protected) }
func (a *admissionFacts) touchedSorted() []string   { return admissionSortedKeys(a.touched) }

func admissionSortedKeys(m map[string]struct{}) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func (a *admissionFacts) touch(word string) {
	if a.touched == nil {
		a.touched = make(map[string]struct{})
	}
	a.touched[word] = struct{}{}
}

// touchCEL records the sensitive identifiers a CEL mutation expression
// mentions. Identifiers are whole words, so imagePullPolicy is not image.
// containers counts when appended to through a JSON patch path ("/-").
func (a *admissionFacts) touchCEL(expr string) {
	isWord := func(r rune) bool {
		return r == '_' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z'
	}
	for _, w := range strings.FieldsFunc(expr, func(r rune) bool { return !isWord(r) }) {
		if t, ok := admissionTouchWords[w]; ok {
			a.touch(t)
		}
	}
	if strings.Contains(expr, "containers/-") {
		a.touch("containers")
	}
}

// touchPath records what a JSON patch operation on a pod writes.
func (a *admissionFacts) touchPath(op, path string) {
	segs := strings.Split(path, "/")
	for i, s := range segs {
		if t, ok := admissionTouchWords[s]; ok {
			a.touch(t)
		}
		if s == "containers" && op == "add" && i+1 < len(segs) {
			a.touch("containers")
		}
	}
}

// walk visits a decoded body. key is the name the value is held under (an
// array's elements inherit it), path a readable location for evidence,
// mutation whether the value is inside spec.mutations. A JSON patch document
// (an array of operations) is walked with each operation's value under the
// last segment of its path, so patches and full objects read the same.
func (a *admissionFacts) walk(v any, key, path string, mutation bool) {
	switch t := v.(type) {
	case map[string]any:
		if op, ok := t["op"].(string); ok && key == "" {
			if p, ok := t["path"].(string); ok {
				a.walkPatchOp(op, p, t["value"])
				return
			}
		}
		for k, child := range t {
			switch k {
			case "metadata", "status", "excludeResourceRules":
				// Labels, managed fields and status say nothing about what
				// the control does; exclusions do not match.
				continue
			}
			childPath := k
			if path != "" {
				childPath = path + "." + k
			}
			a.walk(child, k, childPath, mutation || k == "mutations")
		}
	case []any:
		if key == "validationActions" {
			a.validationActions(t)
		}
		for i, child := range t {
			a.walk(child, key, fmt.Sprintf("%s[%d]", path, i), mutation)
		}
	case string:
		switch {
		case key == "failurePolicy" && t == "Ignore":
			a.failOpen = append(a.failOpen, path)
		case key == "resources":
			r, _, _ := strings.Cut(t, "/")
			if _, ok := a.protectedSet[r]; ok || r == "*" {
				if a.protected == nil {
					a.protected = make(map[string]struct{})
				}
				a.protected[t] = struct{}{}
			}
		case key == "expression" && mutation:
			a.touchCEL(t)
		}
	}
}

// walkPatchOp walks one JSON patch operation's value under its path.
func (a *admissionFacts) walkPatchOp(op, p string, value any) {
	if op == "remove" || op == "test" {
		return
	}
	segs := strings.Split(strings.TrimPrefix(p, "/"), "/")
	key := ""
	// Array indexes ("0", "-") are not names: use the last named segment.
	for i := len(segs) - 1; i >= 0; i-- {
		s := strings.NewReplacer("~1", "/", "~0", "~").Replace(segs[i])
		if s != "-" && strings.Trim(s, "0123456789") != "" {
			key = s
			break
		}
	}
	path := strings.ReplaceAll(strings.TrimPrefix(p, "/"), "/", ".")
	a.walk(value, key, path, slices.Contains(segs, "mutations"))
}

// validationActions marks a binding advisory when its actions lack Deny:
// Warn and Audit let every violating request through.
func (a *admissionFacts) validationActions(actions []any) {
	var names []string
	deny := false
	for _, x := range actions {
		s, _ := x.(string)
		names = append(names, s)
		deny = deny || s == "Deny"
	}
	if !deny {
		a.advisory = true
		a.actions = strings.Join(names, ",")
	}
}

// detectPodSecurity flags a namespace update or patch that removes its
// pod-security.kubernetes.io/enforce label or sets it to privileged. A
// patch says exactly what changed (null removes a label in merge and
// strategic merge patches); a full update only shows the new value, so a
// privileged value there is reported one level lower and a removal cannot
// be seen.
func (d *admissionDetector) detectPodSecurity(ev *pipeline.Event, out []pipeline.Finding) []pipeline.Finding {
	if admissionAttempt(ev) != "" {
		return out
	}
	var change, source, value string
	if ev.Verb == "patch" {
		// The stored object may be privileged because of an earlier change:
		// only the patch document says what this request did.
		change, value = admissionPatchEnforce(selectorRaw(ev.RequestObject), ev.RequestBody)
		source = pipeline.FromRequest
	} else {
		for _, b := range [...]struct {
			raw    []byte
			source string
		}{
			{selectorRaw(ev.ResponseObject), pipeline.FromResponse},
			{selectorRaw(ev.RequestObject), pipeline.FromRequest},
		} {
			if len(b.raw) == 0 {
				continue
			}
			if v, ok := admissionObjectLabel(bodyDecoded(ev, b.source), admissionPodSecurityEnforce); ok {
				if v == admissionPodSecurityPrivileged {
					change, value, source = "set", v, b.source
				}
				break
			}
		}
	}
	if change == "" {
		return out
	}

	sev := d.cfg.PodSecuritySeverity
	admin := d.admins.allows(ev)
	if admin {
		sev = admissionLower(sev)
	}
	note := ""
	if ev.Verb == "update" {
		sev = admissionLower(sev)
		note = " (full update: the earlier value is not in the audit event)"
	}
	what := "removed the pod-security enforce label from"
	if change != "removed" {
		what = "set pod-security enforce to privileged on"
	}
	f := pipeline.NewFinding(admissionDetectorID, ev, "pod-security")
	f.Severity = sev
	f.MITRE = admissionMITREImpair
	f.Summary = fmt.Sprintf("%s %s namespace %s: pods there are no longer checked%s", selectorActor(ev), what, ev.ObjectRef.Name, note)
	shown := value
	if change == "removed" {
		shown = "<removed>"
	}
	f.Evidence = []pipeline.Evidence{{Field: "metadata.labels." + admissionPodSecurityEnforce, Value: shown, Source: source}}
	return append(out, f)
}

// admissionLower returns s one level lower, floored at info.
func admissionLower(s pipeline.Severity) pipeline.Severity {
	if s > pipeline.SeverityInfo {
		return s - 1
	}
	return s
}

// admissionObjectLabel returns a label of a full object body, decoded.
func admissionObjectLabel(body any, label string) (string, bool) {
	m, isObj := body.(map[string]any)
	if !isObj {
		return "", false
	}
	var r bodyReader
	labels := r.strMap(r.obj(m["metadata"])["labels"])
	if r.bad {
		return "", false
	}
	v, ok := labels[label]
	return v, ok
}

// admissionPatchEnforce reads what a patch document does to the enforce
// label: "removed", "set" (with the value when privileged), or "" when it
// does neither. Merge and strategic merge patches remove with null (or by
// nulling all labels); JSON patches with a remove operation, or by
// replacing the whole label map without it. raw is the document as sent
// (its first byte tells a JSON patch from a merge patch) and decoded
// returns it decoded, from the event's shared cache.
func admissionPatchEnforce(raw []byte, decoded func() any) (change, value string) {
	if len(raw) == 0 {
		return "", ""
	}
	body := decoded()
	if raw[0] == '[' {
		list, isList := body.([]any)
		if !isList {
			return "", ""
		}
		type patchOp struct {
			op, path string
			value    any
			hasValue bool
		}
		var r bodyReader
		ops := make([]patchOp, len(list))
		for i, v := range list {
			m := r.obj(v)
			ops[i] = patchOp{op: r.str(m["op"]), path: r.str(m["path"])}
			ops[i].value, ops[i].hasValue = m["value"]
		}
		if r.bad {
			return "", ""
		}
		const labelPath = "/metadata/labels/pod-security.kubernetes.io~1enforce"
		for _, op := range ops {
			switch {
			case op.path == labelPath && op.op == "remove":
				change, value = "removed", ""
			case op.path == labelPath && (op.op == "add" || op.op == "replace"):
				if v, _ := op.value.(string); v == admissionPodSecurityPrivileged {
					change, value = "set", v
				} else {
					change, value = "", ""
				}
			case (op.path == "/metadata/labels" || op.path == "/metadata") && (op.op == "add" || op.op == "replace" || op.op == "remove"):
				change, value = admissionPatchLabels(op.path, op.op, op.value, op.hasValue)
			}
		}
		return change, value
	}
	top, isObj := body.(map[string]any)
	if !isObj {
		return "", ""
	}
	md, isObj := top["metadata"].(map[string]any)
	if !isObj {
		// Absent, null (no metadata to change) or mistyped (the typed
		// decode this replaces failed).
		return "", ""
	}
	lv, present := md["labels"]
	switch {
	case !present:
		return "", ""
	case lv == nil:
		return "removed", ""
	}
	labels, isObj := lv.(map[string]any)
	if !isObj {
		return "", ""
	}
	for _, l := range labels {
		if _, isStr := l.(string); l != nil && !isStr {
			return "", "" // a map[string]*string would not decode
		}
	}
	v, ok := labels[admissionPodSecurityEnforce]
	switch {
	case !ok:
		return "", ""
	case v == nil:
		return "removed", ""
	case v == admissionPodSecurityPrivileged:
		return "set", admissionPodSecurityPrivileged
	}
	return "", ""
}

// admissionPatchLabels handles a JSON patch operation replacing the whole
// label map (or metadata): the label is removed unless the new map keeps it.
// An operation without a value changes nothing readable.
func admissionPatchLabels(path, op string, value any, hasValue bool) (change, v string) {
	if op == "remove" {
		return "removed", ""
	}
	if !hasValue {
		return "", ""
	}
	var r bodyReader
	var labels map[string]string
	if path == "/metadata" {
		labels = r.strMap(r.obj(value)["labels"])
	} else {
		labels = r.strMap(value)
	}
	if r.bad {
		return "", ""
	}
	got, ok := labels[admissionPodSecurityEnforce]
	switch {
	case !ok:
		return "removed", ""
	case got == admissionPodSecurityPrivileged:
		return "set", got
	}
	return "", ""
}
