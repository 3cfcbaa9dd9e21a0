package detectors

import (
	"bytes"
	"errors"
	"fmt"
	"path"
	"strings"
	"time"

	"github.com/auditpipe/auditpipe/internal/pipeline"
)

// ImagePullDetectorID is the id of the unsecured-image-pull detector.
const ImagePullDetectorID = "unsecured-image-pull"

// MITRE ATT&CK techniques the image-pull findings map to.
const (
	// imageMITREDeploy is T1610 Deploy Container: starting a container from
	// an image the pod is not entitled to, or from an unapproved registry.
	imageMITREDeploy = "T1610"
	// imageMITREImplant is T1525 Implant Internal Image: a mutable tag lets
	// whoever can push to the repository swap what runs.
	imageMITREImplant = "T1525"
)

// Kinds of image-pull findings; each is part of a finding's discriminator.
const (
	imageKindCached     = "cached-private-image"
	imageKindMutable    = "mutable-tag"
	imageKindNotAllowed = "registry-not-allowed"
)

// imageDockerHub is the registry a reference without a host refers to.
const imageDockerHub = "docker.io"

// ImagePullConfig configures unsecured-image-pull (KEP-2535): a pod that
// uses a private image with pull policy IfNotPresent or Never and no pull
// secrets can start from a copy another tenant pulled onto the node, without
// ever proving it may read that image.
//
// Registry patterns are "host[/path]": the host may hold path.Match globs
// ("*.azurecr.io"), the path is a repository prefix matched at "/"
// boundaries ("gcr.io/distroless" covers gcr.io/distroless/static but not
// gcr.io/distroless-x). A trailing "/*" is the same as none. Hosts are
// normalised as the container runtime does: no host means docker.io, and a
// one-component Docker Hub name is under library/.
type ImagePullConfig struct {
	// PublicRegistries are images anyone may pull: never reported (except
	// by AllowedRegistries). Default: docker.io/library (official images),
	// gcr.io/distroless, the Kubernetes registries (registry.k8s.io, the
	// frozen k8s.gcr.io and gcr.io/google-containers) and the cloud
	// providers' public ones (gke.gcr.io, public.ecr.aws,
	// mcr.microsoft.com). Add quay.io organisations whose
	// images are public, e.g. "quay.io/prometheus".
	PublicRegistries []string `json:"public_registries"`
	// NodeCredentialedRegistries are registries the kubelet authenticates
	// to by itself (ECR, GAR, ACR credential providers), so every pull is
	// authorised even without imagePullSecrets. Default: the ECR, Artifact
	// Registry and ACR host patterns. Remove them on clusters without those
	// credential providers.
	NodeCredentialedRegistries []string `json:"node_credentialed_registries"`
	// AllowedRegistries, when not empty, is the registry allowlist: any
	// image outside it is reported. Default empty (no allowlist).
	AllowedRegistries []string `json:"allowed_registries"`
}

// defaultImagePullConfig is the section's default; see ImagePullConfig.
func defaultImagePullConfig() ImagePullConfig {
	return ImagePullConfig{
		PublicRegistries: []string{
			"docker.io/library",
			"gcr.io/distroless",
			// The Kubernetes project's registries, current and frozen, and
			// the cloud providers' public registries of system images: no
			// pull from them needs a credential, so a cached copy leaks
			// nothing.
			"registry.k8s.io",
			"k8s.gcr.io",
			"gcr.io/google-containers",
			"gcr.io/google_containers",
			"gke.gcr.io",
			"public.ecr.aws",
			"mcr.microsoft.com",
		},
		NodeCredentialedRegistries: []string{
			"*.dkr.ecr.*.amazonaws.com",
			"*.dkr.ecr.*.amazonaws.com.cn",
			"*-docker.pkg.dev",
			"*.azurecr.io",
		},
	}
}

// validate reports every bad pattern, each named by its key under prefix.
func (c ImagePullConfig) validate(prefix string) error {
	var errs []error
	for _, list := range []struct {
		key      string
		patterns []string
	}{
		{"public_registries", c.PublicRegistries},
		{"node_credentialed_registries", c.NodeCredentialedRegistries},
		{"allowed_registries", c.AllowedRegistries},
	} {
		for i, p := range list.patterns {
			if _, err := imageParsePattern(p); err != nil {
				errs = append(errs, fmt.Errorf("%s.%s[%d]: %w", prefix, list.key, i, err))
			}
		}
	}
	return errors.Join(errs...)
}

// buildImagePull builds the detector for New.
func buildImagePull(cfg Config) ([]Detector, error) {
	d, err := NewImagePull(cfg.UnsecuredImagePull, cfg.State)
	if err != nil {
		return nil, err
	}
	return []Detector{d}, nil
}

// ImagePull is the unsecured-image-pull detector. It is safe for
// concurrent use.
type ImagePull struct {
	public, nodeCredentialed, allowed []imagePattern
	// withSecrets remembers, per cluster and private repository, the last
	// namespace whose pod pulled it with imagePullSecrets: a secretless
	// pod of another namespace using that repository is most likely riding
	// on that namespace's cached copy.
	withSecrets *Window[string, string]
}

var _ Detector = (*ImagePull)(nil)

// NewImagePull builds the detector; state bounds its memory of which
// namespaces pull which private repositories with secrets.
func NewImagePull(cfg ImagePullConfig, state StateConfig) (*ImagePull, error) {
	if err := cfg.validate("unsecured_image_pull"); err != nil {
		return nil, err
	}
	if state.MaxEntries <= 0 || state.Window <= 0 {
		return nil, errors.New("building unsecured-image-pull: state.max_entries and state.window must be positive")
	}
	d := &ImagePull{withSecrets: NewWindow[string, string](state.MaxEntries, time.Duration(state.Window))}
	d.public = imageMustPatterns(cfg.PublicRegistries)
	d.nodeCredentialed = imageMustPatterns(cfg.NodeCredentialedRegistries)
	d.allowed = imageMustPatterns(cfg.AllowedRegistries)
	return d, nil
}

// ID returns "unsecured-image-pull".
func (d *ImagePull) ID() string { return ImagePullDetectorID }

// Detect reports, per container of a pod or workload template written by
// ev, private images that may start from another tenant's cached copy,
// mutable tags on private images, and images outside the allowlist.
func (d *ImagePull) Detect(ev *pipeline.Event, out []pipeline.Finding) []pipeline.Finding {
	t, ok := podSpecMatch(ev)
	if !ok {
		return out
	}
	// A rejected request started nothing.
	if ev.Code() >= 400 {
		return out
	}
	// Pod PATCHes are mostly label and annotation changes by controllers;
	// only the image is mutable in a pod's containers, so judge a patch
	// only when it sets one.
	if t.shape == podSpecShapePod && !t.ephemeral && ev.Verb == "patch" &&
		(ev.RequestObject == nil || !bytes.Contains(ev.RequestObject.Raw, []byte(`"image"`))) {
		return out
	}
	// The response is the stored object: defaulted pull policies, and the
	// service account's imagePullSecrets copied in by admission.
	o, ok := podSpecDecode(ev, t, pipeline.FromResponse)
	if !ok {
		return out
	}
	now := ev.StageTimestamp.Time
	if now.IsZero() {
		now = ev.RequestReceivedTimestamp.Time
	}
	hasSecrets := false
	for _, s := range o.Spec.ImagePullSecrets {
		if s.Name != "" {
			hasSecrets = true
			break
		}
	}
	for _, r := range o.Spec.podSpecContainers() {
		// On the ephemeralcontainers subresource only the ephemeral
		// containers are new; the others were judged when the pod was.
		if t.ephemeral && r.Field != "ephemeralContainers" {
			continue
		}
		out = d.judge(ev, o, r, hasSecrets, now, out)
	}
	return out
}

// judge appends the findings about one container. A container that
// yields no finding allocates nothing unless its repository is pulled
// with secrets (recorded in d.withSecrets): the evidence paths and the
// state key are built only where they are used.
func (d *ImagePull) judge(ev *pipeline.Event, o *podSpecObject, r podSpecContainerRef, hasSecrets bool, now time.Time, out []pipeline.Finding) []pipeline.Finding {
	c := r.C
	if c.Image == "" {
		return out
	}
	ref, parsed := imageParseRef(c.Image)
	if parsed && len(d.allowed) > 0 && !imageMatchAny(d.allowed, ref) {
		f := d.finding(ev, o, r, imageKindNotAllowed, pipeline.SeverityMedium, imageMITREDeploy,
			fmt.Sprintf("%s container %q runs image %s from a registry outside the allowlist", o.podSpecWorkload(), c.Name, c.Image))
		f.Evidence = append(f.Evidence, imageEvidence(o, r),
			pipeline.Evidence{Field: "registry", Value: ref.Host + "/" + ref.Path, Source: o.Source})
		out = append(out, f)
	}
	if !parsed || imageMatchAny(d.public, ref) || imageMatchAny(d.nodeCredentialed, ref) {
		return out
	}
	if hasSecrets {
		d.withSecrets.Update(imageStateKey(ev.Cluster, ref), now, func(string, bool) string { return o.Namespace })
	}

	policy, defaulted := imageEffectivePolicy(c.ImagePullPolicy, ref)
	if !hasSecrets && (policy == "IfNotPresent" || policy == "Never") {
		out = append(out, d.cached(ev, o, r, ref, policy, defaulted, imageEvidence(o, r), imageStateKey(ev.Cluster, ref), now))
	}
	if ref.Digest == "" && (ref.Tag == "" || ref.Tag == "latest") {
		tag := ref.Tag
		if tag == "" {
			tag = "none (latest)"
		}
		repo := ref.Host + "/" + ref.Path
		f := d.finding(ev, o, r, imageKindMutable, pipeline.SeverityLow, imageMITREImplant,
			fmt.Sprintf("%s container %q runs private image %s by mutable tag: whoever can push to %s decides what runs", o.podSpecWorkload(), c.Name, c.Image, repo))
		f.Evidence = append(f.Evidence, imageEvidence(o, r), pipeline.Evidence{Field: "tag", Value: tag, Source: o.Source})
		out = append(out, f)
	}
	return out
}

// imageEvidence is the evidence naming a container's image.
func imageEvidence(o *podSpecObject, r podSpecContainerRef) pipeline.Evidence {
	return pipeline.Evidence{Field: r.podSpecPath(o.SpecPath, "image"), Value: r.C.Image, Source: o.Source}
}

// imageStateKey is d.withSecrets' key of a cluster's private repository.
// It is a new string, so the state never holds on to an event's memory.
func imageStateKey(cluster string, ref imageRef) string {
	return cluster + "\x00" + ref.Host + "/" + ref.Path
}

// cached builds the cached-private-image finding, whose severity starts at
// medium and rises with each aggravating fact.
func (d *ImagePull) cached(ev *pipeline.Event, o *podSpecObject, r podSpecContainerRef, ref imageRef, policy string, defaulted bool,
	imageEv pipeline.Evidence, key string, now time.Time) pipeline.Finding {
	sev := pipeline.SeverityMedium
	policyVal := policy
	if defaulted {
		policyVal += " (defaulted)"
	}
	ev2 := []pipeline.Evidence{
		imageEv,
		{Field: r.podSpecPath(o.SpecPath, "imagePullPolicy"), Value: policyVal, Source: o.Source},
		{Field: o.SpecPath + ".imagePullSecrets", Value: "none", Source: o.Source},
	}
	var why []string
	// A creator that sets nodeName skips the scheduler to land on a node
	// of its choosing, presumably one holding the image.
	if o.Spec.NodeName != "" {
		sev++
		why = append(why, "pinned to node "+o.Spec.NodeName)
		ev2 = append(ev2, pipeline.Evidence{Field: o.SpecPath + ".nodeName", Value: o.Spec.NodeName, Source: o.Source})
	}
	// Never can only ever run a cached copy.
	if policy == "Never" {
		sev++
		why = append(why, "pull policy Never")
	}
	// Without a digest the cached copy under that tag is whatever was
	// pulled last, not a content the owner pinned.
	if ref.Tag != "" && ref.Digest == "" {
		sev++
		why = append(why, "tag without digest")
	}
	if ns, ok := d.withSecrets.Get(key, now); ok && ns != o.Namespace {
		sev++
		why = append(why, "namespace "+ns+" pulls it with secrets")
		ev2 = append(ev2, pipeline.Evidence{Field: "repository_pulled_with_secrets_in", Value: ns, Source: pipeline.FromEvent})
	}
	// Admission copies the service account's imagePullSecrets only into
	// pods: a template, or a pod read from its request, may still get
	// secrets, so the finding is less certain.
	if o.shape != podSpecShapePod || o.Source == pipeline.FromRequest {
		sev--
		why = append(why, "service account "+o.podSpecServiceAccount()+" may add pull secrets")
	}
	sev = podSpecClamp(sev)
	summary := fmt.Sprintf("%s container %q runs private image %s with pull policy %s and no imagePullSecrets: it can start from another tenant's cached copy",
		o.podSpecWorkload(), r.C.Name, r.C.Image, policy)
	if len(why) > 0 {
		summary += " (" + strings.Join(why, "; ") + ")"
	}
	f := d.finding(ev, o, r, imageKindCached, sev, imageMITREDeploy, summary)
	f.Evidence = append(f.Evidence, ev2...)
	return f
}

// finding starts a finding about one container.
func (d *ImagePull) finding(ev *pipeline.Event, o *podSpecObject, r podSpecContainerRef, kind string, sev pipeline.Severity, mitre, summary string) pipeline.Finding {
	f := pipeline.NewFinding(ImagePullDetectorID, ev, kind+":"+r.C.Name)
	f.Severity = sev
	f.MITRE = mitre
	f.Summary = summary
	f.Evidence = make([]pipeline.Evidence, 0, 6)
	return f
}

// imageEffectivePolicy returns the pull policy the apiserver stores: the
// declared one, or, when none is declared, Always for the tag "latest"
// (explicit, or implied by neither tag nor digest) and IfNotPresent
// otherwise, digest-pinned images included. This is SetDefaults_Container
// in kubernetes/pkg/apis/core/v1/defaults.go; note "x:latest@sha256:…"
// keeps its tag and so defaults to Always.
func imageEffectivePolicy(declared string, ref imageRef) (policy string, defaulted bool) {
	if declared != "" {
		return declared, false
	}
	tag := ref.Tag
	if tag == "" && ref.Digest == "" {
		tag = "latest"
	}
	if tag == "latest" {
		return "Always", true
	}
	return "IfNotPresent", true
}

// imageRef is a parsed image reference, normalised like the container
// runtimes do (github.com/distribution/reference's ParseNormalizedNamed).
type imageRef struct {
	// Host is the registry, lower-cased, e.g. "docker.io", "localhost:5000".
	Host string
	// Path is the repository under Host, e.g. "library/nginx".
	Path   string
	Tag    string
	Digest string
}

// imageParseRef parses an image reference. It reports false for references
// no runtime could pull (empty, empty components, bad tag or digest): the
// apiserver accepts those, and the kubelet fails them with InvalidImageName.
func imageParseRef(s string) (imageRef, bool) {
	var r imageRef
	if i := strings.IndexByte(s, '@'); i >= 0 {
		r.Digest = s[i+1:]
		s = s[:i]
		if !strings.Contains(r.Digest, ":") || strings.ContainsAny(r.Digest, "/@") {
			return imageRef{}, false
		}
	}
	if i := strings.LastIndexByte(s, ':'); i >= 0 && i > strings.LastIndexByte(s, '/') {
		r.Tag = s[i+1:]
		s = s[:i]
		if r.Tag == "" || len(r.Tag) > 128 {
			return imageRef{}, false
		}
	}
	// The first component is a registry host when it looks like one: it has
	// a dot or a port, is localhost, or has upper case (repository paths are
	// lower case); otherwise the image is on Docker Hub.
	r.Host, r.Path = imageDockerHub, s
	if i := strings.IndexByte(s, '/'); i >= 0 {
		first := s[:i]
		if strings.ContainsAny(first, ".:") || first == "localhost" || strings.ToLower(first) != first {
			r.Host, r.Path = strings.ToLower(first), s[i+1:]
		}
	}
	if r.Host == "index.docker.io" {
		r.Host = imageDockerHub
	}
	if r.Path == "" || r.Host == "" || strings.HasPrefix(r.Path, "/") || strings.HasSuffix(r.Path, "/") || strings.Contains(r.Path, "//") {
		return imageRef{}, false
	}
	if r.Host == imageDockerHub && !strings.Contains(r.Path, "/") {
		r.Path = "library/" + r.Path
	}
	return r, true
}

// imagePattern is a parsed registry pattern; see ImagePullConfig.
type imagePattern struct {
	host string // lower-cased path.Match pattern
	path string // repository prefix, may be empty
	// literal is set when host has no glob or escape: it matches only
	// itself. Otherwise a host matching the glob starts with hostPrefix
	// (the text before the first glob character) and ends with
	// hostSuffix (the text after the last one), which rejects most hosts
	// before path.Match runs: every container of every pod write is
	// matched against every pattern.
	literal                bool
	hostPrefix, hostSuffix string
}

// imageParsePattern parses and checks one registry pattern.
func imageParsePattern(s string) (imagePattern, error) {
	if s == "" {
		return imagePattern{}, errors.New("empty registry pattern")
	}
	if strings.Contains(s, "://") {
		return imagePattern{}, fmt.Errorf("registry pattern %q: want host[/path], without a scheme", s)
	}
	if strings.ContainsAny(s, "@ ") {
		return imagePattern{}, fmt.Errorf("registry pattern %q: want host[/path], without digest or spaces", s)
	}
	s = strings.TrimSuffix(s, "/*")
	host, p, _ := strings.Cut(s, "/")
	if host == "" {
		return imagePattern{}, fmt.Errorf("registry pattern %q: no host", s)
	}
	if _, err := path.Match(host, ""); err != nil {
		return imagePattern{}, fmt.Errorf("registry pattern %q: bad host glob: %w", s, err)
	}
	if strings.ContainsAny(p, "*?[") {
		return imagePattern{}, fmt.Errorf("registry pattern %q: globs are only allowed in the host", s)
	}
	pat := imagePattern{host: strings.ToLower(host), path: strings.Trim(p, "/")}
	if strings.IndexByte(pat.host, '\\') < 0 {
		if first := strings.IndexAny(pat.host, "*?["); first < 0 {
			pat.literal = true
		} else {
			// A class ends with ']': what follows the last '*', '?' or
			// ']' is literal text the host must end with.
			pat.hostPrefix = pat.host[:first]
			pat.hostSuffix = pat.host[strings.LastIndexAny(pat.host, "*?]")+1:]
		}
	}
	return pat, nil
}

// imageMustPatterns parses patterns validate has already checked.
func imageMustPatterns(ss []string) []imagePattern {
	ps := make([]imagePattern, 0, len(ss))
	for _, s := range ss {
		p, err := imageParsePattern(s)
		if err != nil {
			panic(err) // unreachable: NewImagePull validated ss
		}
		ps = append(ps, p)
	}
	return ps
}

// match reports whether ref's repository is under p.
func (p imagePattern) match(ref imageRef) bool {
	if p.literal {
		if ref.Host != p.host {
			return false
		}
	} else {
		if !strings.HasPrefix(ref.Host, p.hostPrefix) || !strings.HasSuffix(ref.Host, p.hostSuffix) {
			return false
		}
		if ok, _ := path.Match(p.host, ref.Host); !ok {
			return false
		}
	}
	return p.path == "" || ref.Path == p.path ||
		len(ref.Path) > len(p.path) && ref.Path[len(p.path)] == '/' && strings.HasPrefix(ref.Path, p.path)
}

// imageMatchAny reports whether any pattern matches ref.
func imageMatchAny(ps []imagePattern, ref imageRef) bool {
	for _, p := range ps {
		if p.match(ref) {
			return true
		}
	}
	return false
}
