package main

import (
	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
)

// explorerUID is fixed: alert messages link to
// /d/auditpipe-explorer/audit-explorer?var-audit_id=…&var-cluster=….
const explorerUID = "auditpipe-explorer"

// auditIDFilter matches every event when the audit_id box is empty.
// ${audit_id:sqlstring} quotes the value and doubles any quote in it.
const auditIDFilter = "(${audit_id:sqlstring} = '' OR audit_id = ${audit_id:sqlstring})"

// findingsFilter keeps events that have a finding of the chosen detectors
// and severities; with both on "All" it is 1=1 and costs nothing.
const findingsFilter = `$__conditionalAll(audit_id IN (
    SELECT audit_id FROM findings
    WHERE $__timeFilter(time) AND detector IN (${detector:singlequote})), $detector)
  AND $__conditionalAll(audit_id IN (
    SELECT audit_id FROM findings
    WHERE $__timeFilter(time) AND severity IN (${severity:singlequote})), $severity)`

// explorer answers: what happened, who was refused, and what exactly did
// this one request look like.
func explorerBoard(c *catalog) (dashboard.Dashboard, error) {
	bd := c.newBoard(explorerUID, "auditpipe: audit explorer",
		"Audit events over time, denied requests and the raw (redacted) events. Open with ?var-audit_id=<auditID>&var-cluster=<cluster> to see one request.",
		"audit")
	bd.standardVariables()
	bd.b.WithVariable(dashboard.NewTextBoxVariableBuilder("audit_id").
		Label("Audit ID").
		Description("Show only the events of this request (every stage)."))
	bd.b.Time("now-6h", "now")

	over := func(title, label string) {
		bd.chTimeseries("Responses by "+title, "Distinct events with a response per interval (RequestReceived, which has no response code yet, is left out so a request counts once) from the events_by_minute rollup; honours cluster only (the rollup has no user or namespace).", 8, 8,
			`SELECT `+bucket("minute")+`,
  toString(`+label+`) AS `+title+`,
  uniqExactMerge(events) AS events
FROM events_by_minute
WHERE `+where("minute", "cluster")+`
  AND response_code != 0
GROUP BY time, `+title+`
ORDER BY time, `+title, "time", title, "events")
	}
	over("verb", "verb")
	over("resource", "if(resource = '', '(non-resource)', resource)")
	over("code", "response_code")

	bd.row("Denied requests")
	bd.chTimeseries("Denied requests by principal", "Requests answered 401 or 403 per interval, by user (users_by_minute rollup).", 12, 8,
		`SELECT `+bucket("minute")+`,
  if(username = '', '(unauthenticated)', username) AS principal,
  uniqExactMerge(denied) AS denied
FROM users_by_minute
WHERE `+where("minute", "cluster", "user")+`
GROUP BY time, principal
HAVING denied > 0
ORDER BY time, principal`, "time", "principal", "denied")
	bd.chTable("Denied requests", "The newest refused requests with the authorizer's reason.", 12, 8,
		`SELECT time, cluster, username, source_ip, verb, request_uri, response_code, reason, audit_id
FROM events FINAL
WHERE `+where("time", "cluster", "namespace", "user")+`
  AND `+auditIDFilter+`
  AND response_code IN (401, 403)
  AND stage IN ('ResponseComplete', 'Panic')
ORDER BY time DESC
LIMIT 500`, "time", "cluster", "username", "source_ip", "verb", "request_uri", "response_code", "reason", "audit_id")

	bd.row("Events")
	bd.chTable("Audit events", "Raw events, redacted by ingest before they were stored, filtered by every variable; set Audit ID to see one request's stages.", 24, 14,
		`SELECT time, cluster, audit_id, stage, username, source_ip, user_agent, verb, resource, subresource,
  namespace, name, response_code, decision, raw
FROM events FINAL
WHERE `+where("time", "cluster", "namespace", "user")+`
  AND `+auditIDFilter+`
  AND `+findingsFilter+`
ORDER BY time DESC, audit_id, stage
LIMIT 1000`, "time", "cluster", "audit_id", "stage", "username", "source_ip", "user_agent", "verb", "resource", "subresource",
		"namespace", "name", "response_code", "decision", "raw").
		OverrideByName("raw", []dashboard.DynamicConfigValue{{Id: "custom.cellOptions", Value: map[string]any{"type": "json-view"}}}).
		Links([]cog.Builder[dashboard.DashboardLink]{dashboard.NewDashboardLinkBuilder("Security overview").
			Type(dashboard.DashboardLinkTypeLink).Url("/d/" + overviewUID).KeepTime(true).IncludeVars(true)})
	return bd.build()
}
