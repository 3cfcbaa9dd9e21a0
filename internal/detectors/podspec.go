package detectors

import (
	"strconv"
	"strings"

	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"

	"github.com/auditpipe/auditpipe/internal/pipeline"
)

// This file extracts pod specs from audit event bodies for the detectors
// that judge containers (unsecured-image-pull, apparmor-unconfined). It
// reads minimal structs holding only the fields those detectors use out of
// the event's shared decoded bodies (see body.go): the rules read the same
// bodies, so each is decoded once per event.

// podSpecTruncatedAnnotation is set on events whose bodies the apiserver
// dropped because they exceeded the truncate backend's limit.
const podSpecTruncatedAnnotation = "audit.k8s.io/truncated"

// podSpecShape says where the pod spec sits in a resource's body.
type podSpecShape uint8

const (
	podSpecShapeNone     podSpecShape = iota
	podSpecShapePod                   // spec
	podSpecShapeTemplate              // spec.template.spec
	podSpecShapeCronJob               // spec.jobTemplate.spec.template.spec
)

// podSpecTarget is what podSpecMatch learned from an event's objectRef,
// before any body is decoded.
type podSpecTarget struct {
	shape podSpecShape
	// kind is the resource's kind, e.g. "Deployment", for summaries.
	kind string
	// ephemeral is set for the pods/ephemeralcontainers subresource, where
	// only the ephemeral containers are new.
	ephemeral bool
}

// podSpecMatch decides from the event's metadata alone whether its bodies
// may hold a pod spec worth judging. It allocates nothing, so events that
// are not pod or workload writes cost a few comparisons.
func podSpecMatch(ev *pipeline.Event) (podSpecTarget, bool) {
	ref := ev.ObjectRef
	if ref == nil {
		return podSpecTarget{}, false
	}
	switch ev.Verb {
	case "create", "update", "patch":
	default:
		return podSpecTarget{}, false
	}
	var t podSpecTarget
	switch ref.APIGroup {
	case "":
		switch ref.Resource {
		case "pods":
			t = podSpecTarget{shape: podSpecShapePod, kind: "Pod"}
			switch ref.Subresource {
			case "":
			case "ephemeralcontainers":
				// Ephemeral containers are added with update or patch of
				// the subresource, never create.
				if ev.Verb == "create" {
					return podSpecTarget{}, false
				}
				t.ephemeral = true
				return podSpecCheckBodies(ev, t)
			default:
				return podSpecTarget{}, false
			}
		case "replicationcontrollers":
			t = podSpecTarget{shape: podSpecShapeTemplate, kind: "ReplicationController"}
		default:
			return podSpecTarget{}, false
		}
	case "apps":
		switch ref.Resource {
		case "deployments":
			t = podSpecTarget{shape: podSpecShapeTemplate, kind: "Deployment"}
		case "statefulsets":
			t = podSpecTarget{shape: podSpecShapeTemplate, kind: "StatefulSet"}
		case "daemonsets":
			t = podSpecTarget{shape: podSpecShapeTemplate, kind: "DaemonSet"}
		case "replicasets":
			t = podSpecTarget{shape: podSpecShapeTemplate, kind: "ReplicaSet"}
		default:
			return podSpecTarget{}, false
		}
	case "batch":
		switch ref.Resource {
		case "jobs":
			t = podSpecTarget{shape: podSpecShapeTemplate, kind: "Job"}
		case "cronjobs":
			t = podSpecTarget{shape: podSpecShapeCronJob, kind: "CronJob"}
		default:
			return podSpecTarget{}, false
		}
	default:
		return podSpecTarget{}, false
	}
	// Status and scale subresources carry no pod spec a user wrote.
	if ref.Subresource != "" {
		return podSpecTarget{}, false
	}
	return podSpecCheckBodies(ev, t)
}

// podSpecCheckBodies rejects events with nothing to read: Metadata-level
// events, truncated ones, and dry runs (nothing was persisted, and CI runs
// `kubectl apply --dry-run=server` all day).
func podSpecCheckBodies(ev *pipeline.Event, t podSpecTarget) (podSpecTarget, bool) {
	if ev.RequestObject == nil && ev.ResponseObject == nil {
		return podSpecTarget{}, false
	}
	if ev.Annotations[podSpecTruncatedAnnotation] == "true" {
		return podSpecTarget{}, false
	}
	if strings.Contains(ev.RequestURI, "dryRun=") {
		return podSpecTarget{}, false
	}
	return t, true
}

// podSpecObject is one pod spec read from one body of an event.
type podSpecObject struct {
	podSpecTarget
	// Source is pipeline.FromRequest or pipeline.FromResponse.
	Source string
	// Name is "namespace/name" of the pod or workload, as best known.
	Name      string
	Namespace string
	// Owner is "Kind/name" of a pod's controller, if any.
	Owner string
	// Annotations are the pod's, or the pod template's, annotations.
	Annotations map[string]string
	Spec        podSpecSpec
	// SpecPath is the JSON path of Spec, e.g. "spec.template.spec", and
	// MetaPath that of the annotations' object metadata.
	SpecPath, MetaPath string
}

// podSpecSpec holds the PodSpec fields the detectors read.
type podSpecSpec struct {
	NodeName                 string                  `json:"nodeName"`
	ServiceAccountName       string                  `json:"serviceAccountName"`
	DeprecatedServiceAccount string                  `json:"serviceAccount"`
	ImagePullSecrets         []podSpecLocalRef       `json:"imagePullSecrets"`
	SecurityContext          *podSpecSecurityContext `json:"securityContext"`
	Containers               []podSpecContainer      `json:"containers"`
	InitContainers           []podSpecContainer      `json:"initContainers"`
	EphemeralContainers      []podSpecContainer      `json:"ephemeralContainers"`
	// OS is set to "windows" for Windows pods, where AppArmor and seccomp
	// do not apply.
	OS *struct {
		Name string `json:"name"`
	} `json:"os"`
}

// podSpecLocalRef is a LocalObjectReference.
type podSpecLocalRef struct {
	Name string `json:"name"`
}

// podSpecSecurityContext holds the pod- and container-level security
// context fields the detectors read; pod level has no Privileged.
type podSpecSecurityContext struct {
	Privileged      *bool           `json:"privileged"`
	AppArmorProfile *podSpecProfile `json:"appArmorProfile"`
	SeccompProfile  *podSpecProfile `json:"seccompProfile"`
}

// podSpecProfile is an AppArmorProfile or a SeccompProfile: both have a
// type and, for Localhost, a localhostProfile.
type podSpecProfile struct {
	Type             string  `json:"type"`
	LocalhostProfile *string `json:"localhostProfile"`
}

// podSpecContainer holds a Container's (or EphemeralContainer's) fields the
// detectors read.
type podSpecContainer struct {
	Name            string                  `json:"name"`
	Image           string                  `json:"image"`
	ImagePullPolicy string                  `json:"imagePullPolicy"`
	SecurityContext *podSpecSecurityContext `json:"securityContext"`
}

// podSpecMeta is the ObjectMeta subset the detectors read.
type podSpecMeta struct {
	Name         string
	GenerateName string
	Namespace    string
	Annotations  map[string]string
	// Owner is "Kind/name" of the controller owner reference, if any.
	Owner string
}

// podSpecReadMeta reads an ObjectMeta.
func podSpecReadMeta(r *bodyReader, v any) podSpecMeta {
	m := r.obj(v)
	if m == nil {
		return podSpecMeta{}
	}
	md := podSpecMeta{
		Name:         r.str(m["name"]),
		GenerateName: r.str(m["generateName"]),
		Namespace:    r.str(m["namespace"]),
		Annotations:  r.strMap(m["annotations"]),
	}
	found := false
	for _, or := range r.list(m["ownerReferences"]) {
		o := r.obj(or)
		kind, name, ctl := r.str(o["kind"]), r.str(o["name"]), r.boolPtr(o["controller"])
		// Every reference is type-checked, as json.Unmarshal would; the
		// first controller wins.
		if !found && ctl != nil && *ctl {
			md.Owner, found = kind+"/"+name, true
		}
	}
	return md
}

// podSpecReadSpec reads a PodSpec.
func podSpecReadSpec(r *bodyReader, m map[string]any) podSpecSpec {
	if m == nil {
		return podSpecSpec{}
	}
	s := podSpecSpec{
		NodeName:                 r.str(m["nodeName"]),
		ServiceAccountName:       r.str(m["serviceAccountName"]),
		DeprecatedServiceAccount: r.str(m["serviceAccount"]),
		SecurityContext:          podSpecReadSecurityContext(r, m["securityContext"]),
		Containers:               podSpecReadContainers(r, m["containers"]),
		InitContainers:           podSpecReadContainers(r, m["initContainers"]),
		EphemeralContainers:      podSpecReadContainers(r, m["ephemeralContainers"]),
	}
	if l := r.list(m["imagePullSecrets"]); l != nil {
		s.ImagePullSecrets = make([]podSpecLocalRef, len(l))
		for i, v := range l {
			s.ImagePullSecrets[i].Name = r.str(r.obj(v)["name"])
		}
	}
	if o := r.obj(m["os"]); o != nil {
		s.OS = &struct {
			Name string `json:"name"`
		}{Name: r.str(o["name"])}
	}
	return s
}

// podSpecReadContainers reads a list of containers.
func podSpecReadContainers(r *bodyReader, v any) []podSpecContainer {
	l := r.list(v)
	if l == nil {
		return nil
	}
	cs := make([]podSpecContainer, len(l))
	for i, v := range l {
		c := r.obj(v)
		cs[i] = podSpecContainer{
			Name:            r.str(c["name"]),
			Image:           r.str(c["image"]),
			ImagePullPolicy: r.str(c["imagePullPolicy"]),
			SecurityContext: podSpecReadSecurityContext(r, c["securityContext"]),
		}
	}
	return cs
}

// podSpecReadSecurityContext reads a pod or container security context.
func podSpecReadSecurityContext(r *bodyReader, v any) *podSpecSecurityContext {
	m := r.obj(v)
	if m == nil {
		return nil
	}
	return &podSpecSecurityContext{
		Privileged:      r.boolPtr(m["privileged"]),
		AppArmorProfile: podSpecReadProfile(r, m["appArmorProfile"]),
		SeccompProfile:  podSpecReadProfile(r, m["seccompProfile"]),
	}
}

// podSpecReadProfile reads an AppArmorProfile or SeccompProfile.
func podSpecReadProfile(r *bodyReader, v any) *podSpecProfile {
	m := r.obj(v)
	if m == nil {
		return nil
	}
	return &podSpecProfile{Type: r.str(m["type"]), LocalhostProfile: r.strPtr(m["localhostProfile"])}
}

// podSpecReadTemplate reads a PodTemplateSpec; ok is false when it is
// absent or null.
func podSpecReadTemplate(r *bodyReader, v any) (meta podSpecMeta, spec podSpecSpec, ok bool) {
	m := r.obj(v)
	if m == nil {
		return podSpecMeta{}, podSpecSpec{}, false
	}
	return podSpecReadMeta(r, m["metadata"]), podSpecReadSpec(r, r.obj(m["spec"])), true
}

// podSpecDecode reads the pod spec of an event podSpecMatch accepted,
// trying the body named by prefer (pipeline.FromRequest or FromResponse)
// first and the other one next. A body is skipped when absent, when it is
// not a JSON object (a JSON patch is an array), when it is a Status (a
// failed request's response), or when it does not decode. Bodies come from
// the event's shared cache: each is decoded once however many detectors
// and rules read it.
func podSpecDecode(ev *pipeline.Event, t podSpecTarget, prefer string) (*podSpecObject, bool) {
	if prefer == pipeline.FromRequest {
		if o, ok := podSpecView(ev, t, pipeline.FromRequest); ok {
			return o, true
		}
		return podSpecView(ev, t, pipeline.FromResponse)
	}
	if o, ok := podSpecView(ev, t, pipeline.FromResponse); ok {
		return o, true
	}
	return podSpecView(ev, t, pipeline.FromRequest)
}

// podSpecViewKey is the key of the pod-spec view in an event's body cache.
type podSpecViewKey struct{}

// podSpecViewed is a body's pod-spec view as cached on the event: what
// podSpecDecodeBody returned, and the target and objectRef it was read
// for.
type podSpecViewed struct {
	t   podSpecTarget
	ref *auditv1.ObjectReference
	o   *podSpecObject // nil: the body holds no readable pod spec
}

// podSpecView is podSpecDecodeBody of one body, read once per event and
// shared by every detector (unsecured-image-pull and apparmor-unconfined
// read the same view of a body when they pick the same one). A view read
// for another target or objectRef, as a test that edits an event between
// calls has, is read again.
func podSpecView(ev *pipeline.Event, t podSpecTarget, source string) (*podSpecObject, bool) {
	v, _ := ev.BodyView(source, podSpecViewKey{}, func(body any) any {
		o, _ := podSpecDecodeBody(ev, t, body, source)
		return &podSpecViewed{t: t, ref: ev.ObjectRef, o: o}
	}).(*podSpecViewed)
	if v == nil || v.t != t || v.ref != ev.ObjectRef {
		return podSpecDecodeBody(ev, t, bodyDecoded(ev, source), source)
	}
	return v.o, v.o != nil
}

// podSpecDecodeBody reads one decoded body; see podSpecDecode. Every shape
// is read whatever t.shape is, so that a mistyped field anywhere rejects
// the body exactly as a typed json.Unmarshal of all shapes at once did.
func podSpecDecodeBody(ev *pipeline.Event, t podSpecTarget, body any, source string) (*podSpecObject, bool) {
	top, isObj := body.(map[string]any)
	if !isObj {
		return nil, false
	}
	var r bodyReader
	kind := r.str(top["kind"])
	meta := podSpecReadMeta(&r, top["metadata"])
	specM := r.obj(top["spec"])
	podSpec := podSpecReadSpec(&r, specM)
	tmplMeta, tmplSpec, tmplOK := podSpecReadTemplate(&r, specM["template"])
	var cronMeta podSpecMeta
	var cronSpec podSpecSpec
	cronOK := false
	if jt := r.obj(specM["jobTemplate"]); jt != nil {
		cronMeta, cronSpec, cronOK = podSpecReadTemplate(&r, r.obj(jt["spec"])["template"])
	}
	if r.bad || kind == "Status" {
		return nil, false
	}
	o := &podSpecObject{podSpecTarget: t, Source: source}
	switch t.shape {
	case podSpecShapePod:
		o.Spec = podSpec
		o.Annotations = meta.Annotations
		o.SpecPath, o.MetaPath = "spec", "metadata"
	case podSpecShapeTemplate:
		if tmplOK {
			o.Spec = tmplSpec
			o.Annotations = tmplMeta.Annotations
		}
		o.SpecPath, o.MetaPath = "spec.template.spec", "spec.template.metadata"
	case podSpecShapeCronJob:
		if cronOK {
			o.Spec = cronSpec
			o.Annotations = cronMeta.Annotations
		}
		o.SpecPath, o.MetaPath = "spec.jobTemplate.spec.template.spec", "spec.jobTemplate.spec.template.metadata"
	default:
		return nil, false
	}
	o.Namespace = ev.ObjectRef.Namespace
	if o.Namespace == "" {
		o.Namespace = meta.Namespace
	}
	// The response of a create with generateName has the real name; the
	// request and objectRef only have the prefix (or nothing).
	name := meta.Name
	if name == "" {
		name = ev.ObjectRef.Name
	}
	if name == "" && meta.GenerateName != "" {
		name = meta.GenerateName + "*"
	}
	o.Name = name
	if o.Namespace != "" {
		o.Name = o.Namespace + "/" + name
	}
	o.Owner = meta.Owner
	return o, true
}

// podSpecWorkload names the object for a summary: "Deployment shop/api",
// or "Pod shop/api-7d9-x (ReplicaSet/api-7d9)".
func (o *podSpecObject) podSpecWorkload() string {
	s := o.kind + " " + o.Name
	if o.Owner != "" {
		s += " (" + o.Owner + ")"
	}
	return s
}

// podSpecServiceAccount returns the pod's service account as
// "namespace/name"; an unset one is "default", as admission defaults it.
func (o *podSpecObject) podSpecServiceAccount() string {
	sa := o.Spec.ServiceAccountName
	if sa == "" {
		sa = o.Spec.DeprecatedServiceAccount
	}
	if sa == "" {
		sa = "default"
	}
	return o.Namespace + "/" + sa
}

// podSpecContainerRef is one container with its place in the spec.
type podSpecContainerRef struct {
	C *podSpecContainer
	// Field is "containers", "initContainers" or "ephemeralContainers".
	Field string
	Index int
}

// podSpecPath returns the container's JSON path under specPath, with a
// trailing field when field is not empty.
func (r podSpecContainerRef) podSpecPath(specPath, field string) string {
	p := specPath + "." + r.Field + "[" + strconv.Itoa(r.Index) + "]"
	if field != "" {
		p += "." + field
	}
	return p
}

// podSpecContainers lists every container of the spec, init and ephemeral
// ones included, in spec order.
func (s *podSpecSpec) podSpecContainers() []podSpecContainerRef {
	refs := make([]podSpecContainerRef, 0, len(s.InitContainers)+len(s.Containers)+len(s.EphemeralContainers))
	for i := range s.InitContainers {
		refs = append(refs, podSpecContainerRef{C: &s.InitContainers[i], Field: "initContainers", Index: i})
	}
	for i := range s.Containers {
		refs = append(refs, podSpecContainerRef{C: &s.Containers[i], Field: "containers", Index: i})
	}
	for i := range s.EphemeralContainers {
		refs = append(refs, podSpecContainerRef{C: &s.EphemeralContainers[i], Field: "ephemeralContainers", Index: i})
	}
	return refs
}

// podSpecClamp keeps a severity that was raised and lowered step by step
// within low..critical: a finding worth raising is never informational.
func podSpecClamp(s pipeline.Severity) pipeline.Severity {
	return max(pipeline.SeverityLow, min(s, pipeline.SeverityCritical))
}
