package alert

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/auditpipe/auditpipe/internal/pipeline"
)

// Slack's Block Kit limits (docs.slack.dev, reference/block-kit/blocks):
// a message holds at most 50 blocks; a header's plain text at most 150
// characters; a section's text 3000 and each of its at most 10 fields 2000;
// a context at most 10 elements. Slack also refuses a message whose blocks
// add up to roughly 13,000 characters (msg_blocks_too_long) although no
// single limit is hit, hence slackTextBudget.
const (
	slackMaxBlocks      = 50
	slackMaxHeader      = 150
	slackMaxSectionText = 3000
	slackMaxField       = 2000
	slackMaxFields      = 10
	slackMaxFallback    = 3000
	// slackTextBudget is the total text a message may carry; alerts past
	// it are summarised as "and N more".
	slackTextBudget = 11000
	// Per-alert caps, well below Slack's so that a digest fits several
	// alerts: a summary is one sentence, evidence a handful of fields.
	slackSummaryLen  = 1500
	slackEvidenceLen = 1500
	slackValueLen    = 300
)

// SlackOptions are a Slack receiver's rendering options.
type SlackOptions struct {
	// Channel overrides the webhook's channel. Optional.
	Channel string
}

type slackPayload struct {
	Channel     string            `json:"channel,omitempty"`
	Text        string            `json:"text"`
	Attachments []slackAttachment `json:"attachments"`
}

type slackAttachment struct {
	Color  string       `json:"color"`
	Blocks []slackBlock `json:"blocks"`
}

type slackBlock struct {
	Type     string      `json:"type"`
	Text     *slackText  `json:"text,omitempty"`
	Fields   []slackText `json:"fields,omitempty"`
	Elements []slackText `json:"elements,omitempty"`
}

type slackText struct {
	Type string `json:"type"`
	Text string `json:"text"`
	// Emoji lets plain_text show :red_circle: as an emoji.
	Emoji bool `json:"emoji,omitempty"`
	// Verbatim stops Slack from auto-linking names and parsing mentions
	// such as @here in mrkdwn: every text here may hold user input.
	Verbatim bool `json:"verbatim,omitempty"`
}

func mrkdwn(s string) slackText { return slackText{Type: "mrkdwn", Text: s, Verbatim: true} }

var severityStyle = map[pipeline.Severity]struct{ color, emoji string }{
	pipeline.SeverityCritical: {"#8B0000", ":rotating_light:"},
	pipeline.SeverityHigh:     {"#E01E5A", ":red_circle:"},
	pipeline.SeverityMedium:   {"#ECB22E", ":large_orange_circle:"},
	pipeline.SeverityLow:      {"#36C5F0", ":large_blue_circle:"},
	pipeline.SeverityInfo:     {"#9E9E9E", ":information_source:"},
}

func style(s pipeline.Severity) (color, emoji string) {
	st, ok := severityStyle[s]
	if !ok {
		st = severityStyle[pipeline.SeverityInfo]
	}
	return st.color, st.emoji
}

// RenderSlack renders g as a Slack incoming-webhook payload in Block Kit.
// It is a pure function of its arguments. The attachment colour and the
// emoji give the highest severity; each alert shows its summary first,
// then who, what and where, the evidence, and a link to Grafana. Every
// string from the audit log is escaped (&, <, >), so a username cannot
// inject a mention or a link, and cut to fit Slack's limits.
func RenderSlack(g Group, opts SlackOptions) ([]byte, error) {
	if len(g.Alerts) == 0 {
		return nil, fmt.Errorf("rendering slack message: group for %s has no alerts", g.Receiver)
	}
	top := g.Alerts[0].Finding.Severity
	total := 0
	for _, a := range g.Alerts {
		top = max(top, a.Finding.Severity)
		total += a.Count
	}
	color, emoji := style(top)

	var header, fallback string
	if len(g.Alerts) == 1 {
		f := &g.Alerts[0].Finding
		header = fmt.Sprintf("%s %s %s in %s%s", emoji, strings.ToUpper(f.Severity.String()), f.Detector, f.Cluster, countSuffix(g.Alerts[0].Count))
		fallback = fmt.Sprintf("[%s] %s in %s%s: %s", strings.ToUpper(f.Severity.String()), f.Detector, f.Cluster, countSuffix(g.Alerts[0].Count), f.Summary)
	} else {
		where := groupWhere(g)
		header = fmt.Sprintf("%s %d auditpipe findings%s (%d occurrences)", emoji, len(g.Alerts), where, total)
		fallback = fmt.Sprintf("%d auditpipe findings%s, highest %s: %s", len(g.Alerts), where, top, g.Alerts[0].Finding.Summary)
	}

	blocks := []slackBlock{{Type: "header", Text: &slackText{Type: "plain_text", Text: truncate(plain(header), slackMaxHeader), Emoji: true}}}
	budget := slackTextBudget
	shown := 0
	for i := range g.Alerts {
		ab := alertBlocks(&g.Alerts[i], g.GrafanaURL)
		size := 0
		for _, b := range ab {
			size += blockLen(b)
		}
		// Keep room for the divider, and for the "more" note.
		if len(blocks)+len(ab)+2 > slackMaxBlocks || (shown > 0 && size > budget) {
			break
		}
		if shown > 0 {
			blocks = append(blocks, slackBlock{Type: "divider"})
		}
		blocks = append(blocks, ab...)
		budget -= size
		shown++
	}
	if rest := len(g.Alerts) - shown; rest > 0 {
		blocks = append(blocks, slackBlock{Type: "context", Elements: []slackText{mrkdwn(fmt.Sprintf("…and %d more findings not shown; most severe first. See Grafana for all.", rest))}})
	}
	p := slackPayload{
		Channel:     opts.Channel,
		Text:        truncEsc(esc(fallback), slackMaxFallback),
		Attachments: []slackAttachment{{Color: color, Blocks: blocks}},
	}
	// Without HTML escaping the payload shows &lt; rather than \u0026lt;,
	// which keeps golden files readable; Slack reads both.
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(p); err != nil {
		return nil, fmt.Errorf("encoding slack message: %w", err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// alertBlocks renders one alert: summary, facts, evidence, context.
func alertBlocks(a *Alert, grafana string) []slackBlock {
	f := &a.Finding
	_, emoji := style(f.Severity)
	summary := fmt.Sprintf("%s *%s* `%s`%s\n%s", emoji, strings.ToUpper(f.Severity.String()), esc(f.Detector), countSuffix(a.Count), truncEsc(esc(f.Summary), slackSummaryLen))

	field := func(name, v string) slackText {
		return mrkdwn(truncEsc("*"+esc(name)+"*\n"+code(v, slackValueLen), slackMaxField))
	}
	fields := []slackText{
		field("User", f.Username),
		field("Credential", f.CredentialID),
		field("Source IP", f.SourceIP),
		field("User agent", f.UserAgent),
		field("Verb", f.Verb),
		field("Object", objectText(f)),
		field("Cluster", f.Cluster),
	}
	if len(f.Groups) > 0 {
		fields = append(fields, field("Groups", strings.Join(f.Groups, ", ")))
	}
	if a.Count > 1 {
		fields = append(fields, mrkdwn(fmt.Sprintf("*Occurrences*\n%d between %s and %s", a.Count, stamp(a.FirstSeen), stamp(a.LastSeen))))
	}
	if f.MITRE != "" {
		fields = append(fields, field("MITRE ATT&CK", f.MITRE))
	}
	fields = fields[:min(len(fields), slackMaxFields)]

	var ev strings.Builder
	ev.WriteString("*Evidence*")
	if len(f.Evidence) == 0 {
		ev.WriteString("\n_none recorded_")
	}
	for i, e := range f.Evidence {
		line := fmt.Sprintf("\n• `%s` = %s _(%s)_", strings.ReplaceAll(esc(oneLine(e.Field)), "`", "'"), code(e.Value, slackValueLen), esc(e.Source))
		// Whole lines only: a cut inside a code span would leave it open.
		if ev.Len()+len(line) > slackEvidenceLen-40 {
			fmt.Fprintf(&ev, "\n…and %d more", len(f.Evidence)-i)
			break
		}
		ev.WriteString(line)
	}

	ctx := fmt.Sprintf("finding %s · audit %s · %s", code(f.ID, 64), code(f.AuditID, 64), stamp(f.Time))
	if link := GrafanaLink(grafana, f); link != "" {
		ctx = fmt.Sprintf("<%s|Open in Grafana> · %s", esc(link), ctx)
	}
	return []slackBlock{
		{Type: "section", Text: ptr(mrkdwn(truncEsc(summary, slackMaxSectionText)))},
		{Type: "section", Fields: fields},
		{Type: "section", Text: ptr(mrkdwn(ev.String()))},
		{Type: "context", Elements: []slackText{mrkdwn(ctx)}},
	}
}

func ptr[T any](v T) *T { return &v }

func blockLen(b slackBlock) int {
	n := 0
	if b.Text != nil {
		n += utf8.RuneCountInString(b.Text.Text)
	}
	for _, t := range b.Fields {
		n += utf8.RuneCountInString(t.Text)
	}
	for _, t := range b.Elements {
		n += utf8.RuneCountInString(t.Text)
	}
	return n
}

func countSuffix(n int) string {
	if n <= 1 {
		return ""
	}
	return fmt.Sprintf(" ×%d", n)
}

// groupWhere names the group's labels, e.g. " (cluster=prod)".
func groupWhere(g Group) string {
	var parts []string
	for _, l := range g.Labels {
		if l.Value != "" {
			parts = append(parts, l.Name+"="+l.Value)
		}
	}
	if len(parts) == 0 {
		return ""
	}
	return " (" + strings.Join(parts, ", ") + ")"
}

func stamp(t time.Time) string {
	if t.IsZero() {
		return "unknown time"
	}
	return t.UTC().Format(time.RFC3339)
}

// esc escapes the three characters Slack's mrkdwn gives meaning to.
// Escaping < and > is what keeps "<!channel>" or "<@U123>" in a username
// from becoming a mention, and "<https://x|y>" from becoming a link.
var escaper = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;")

func esc(s string) string { return escaper.Replace(s) }

// plain strips the escape-worthy characters from plain_text, where Slack
// shows entities literally.
var plainer = strings.NewReplacer("&", "+", "<", "", ">", "")

func plain(s string) string { return plainer.Replace(oneLine(s)) }

func oneLine(s string) string {
	return strings.NewReplacer("\r\n", " ", "\n", " ", "\r", " ", "\t", " ").Replace(s)
}

// code shows a user-controlled value as inline code, cut to n characters;
// backticks inside would end the span, so they become quotes.
func code(s string, n int) string {
	if s == "" {
		return "_none_"
	}
	s = strings.ReplaceAll(oneLine(s), "`", "'")
	return "`" + truncEsc(esc(s), n) + "`"
}

// truncEsc cuts escaped text to n characters without splitting an entity
// such as &amp;.
func truncEsc(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	cut := truncate(s, n)
	cut = strings.TrimSuffix(cut, "…")
	if amp := strings.LastIndexByte(cut, '&'); amp >= 0 && !strings.Contains(cut[amp:], ";") {
		cut = cut[:amp]
	}
	return cut + "…"
}
