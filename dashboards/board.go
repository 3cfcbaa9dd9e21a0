package main

import (
	"fmt"
	"strings"

	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/common"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/prometheus"
	"github.com/grafana/grafana-foundation-sdk/go/stat"
	"github.com/grafana/grafana-foundation-sdk/go/table"
	"github.com/grafana/grafana-foundation-sdk/go/timeseries"
)

// Query is one ClickHouse query a dashboard runs, with the columns the
// panel expects back. The panel-query test runs every Query against a real
// server; a panel whose SQL is not in the catalog fails that test.
type Query struct {
	// Dashboard is the uid of the dashboard holding the query.
	Dashboard string
	// Panel is the panel title, or "$name" for a template variable.
	Panel string
	// SQL is the rawSql exactly as written into the dashboard JSON.
	SQL string
	// Columns are the result's column names, in order.
	Columns []string
	// Filters lists the variables the query honours, so the test can
	// check that selecting a value narrows the result.
	Filters []string
}

// catalog collects every ClickHouse query of one build.
type catalog struct {
	queries []Query
}

// board wraps an SDK dashboard builder with the catalog and a panel id
// counter, so ids are stable from one generation to the next.
type board struct {
	cat    *catalog
	uid    string
	b      *dashboard.DashboardBuilder
	nextID uint32
}

func (c *catalog) newBoard(uid, title, description string, tags ...string) *board {
	b := dashboard.NewDashboardBuilder(title).
		Uid(uid).
		Description(description).
		Tags(append([]string{"auditpipe"}, tags...)).
		Editable().
		Timezone("utc").
		Refresh("1m").
		Tooltip(dashboard.DashboardCursorSyncCrosshair).
		Time("now-24h", "now")
	return &board{cat: c, uid: uid, b: b}
}

func (bd *board) id() uint32 {
	bd.nextID++
	return bd.nextID
}

// record adds a query to the catalog and returns its SQL.
func (bd *board) record(panel, sql string, cols []string) string {
	bd.cat.queries = append(bd.cat.queries, Query{
		Dashboard: bd.uid, Panel: panel, SQL: sql, Columns: cols, Filters: usedVariables(sql),
	})
	return sql
}

// row starts a new row; panels added after it belong to it.
func (bd *board) row(title string) {
	bd.b.WithRow(dashboard.NewRowBuilder(title).Id(bd.id()))
}

// chTimeseries adds a time series panel. sql must return time, optional
// label columns, then numeric values (the plugin's long format).
func (bd *board) chTimeseries(title, desc string, w, h uint32, sql string, cols ...string) *timeseries.PanelBuilder {
	p := timeseries.NewPanelBuilder().
		Id(bd.id()).
		Title(title).
		Description(desc).
		Datasource(clickhouseRef()).
		Span(w).Height(h).
		WithTarget(newCHQuery("A", bd.record(title, sql, cols), CHFormatTimeSeries)).
		DrawStyle(common.GraphDrawStyleBars).
		FillOpacity(80).
		Stacking(common.NewStackingConfigBuilder().Mode(common.StackingModeNormal)).
		Legend(common.NewVizLegendOptionsBuilder().
			ShowLegend(true).
			DisplayMode(common.LegendDisplayModeTable).
			Placement(common.LegendPlacementRight).
			Calcs([]string{"sum"}))
	bd.b.WithPanel(p)
	return p
}

// chTable adds a table panel over rows returned as they are.
func (bd *board) chTable(title, desc string, w, h uint32, sql string, cols ...string) *table.PanelBuilder {
	p := table.NewPanelBuilder().
		Id(bd.id()).
		Title(title).
		Description(desc).
		Datasource(clickhouseRef()).
		Span(w).Height(h).
		WithTarget(newCHQuery("A", bd.record(title, sql, cols), CHFormatTable))
	if contains(cols, "audit_id") {
		// Every audit id opens the explorer on that request.
		p.OverrideByName("audit_id", []dashboard.DynamicConfigValue{{
			Id: "links",
			Value: []map[string]any{{
				"title": "Open in the audit explorer",
				"url":   explorerLink("${__value.raw}", "${__data.fields.cluster}"),
			}},
		}})
	}
	bd.b.WithPanel(p)
	return p
}

// chStat adds a single-number panel.
func (bd *board) chStat(title, desc string, w, h uint32, sql string, cols ...string) *stat.PanelBuilder {
	p := stat.NewPanelBuilder().
		Id(bd.id()).
		Title(title).
		Description(desc).
		Datasource(clickhouseRef()).
		Span(w).Height(h).
		WithTarget(newCHQuery("A", bd.record(title, sql, cols), CHFormatTable)).
		GraphMode(common.BigValueGraphModeNone)
	bd.b.WithPanel(p)
	return p
}

// promTimeseries adds a Prometheus time series panel with one target per
// expression, legends in the same order.
func (bd *board) promTimeseries(title, desc, unit string, w, h uint32, exprs ...[2]string) *timeseries.PanelBuilder {
	p := timeseries.NewPanelBuilder().
		Id(bd.id()).
		Title(title).
		Description(desc).
		Datasource(prometheusRef()).
		Span(w).Height(h).
		Unit(unit).
		Legend(common.NewVizLegendOptionsBuilder().
			ShowLegend(true).
			DisplayMode(common.LegendDisplayModeList).
			Placement(common.LegendPlacementBottom))
	for i, e := range exprs {
		p.WithTarget(prometheus.NewDataqueryBuilder().
			RefId(string(rune('A' + i))).
			Datasource(prometheusRef()).
			Expr(e[0]).
			LegendFormat(e[1]).
			Range())
	}
	bd.b.WithPanel(p)
	return p
}

// explorerLink is the audit explorer URL for one request; Slack messages
// build the same link (uid auditpipe-explorer, var-audit_id, var-cluster).
func explorerLink(auditID, cluster string) string {
	return "/d/" + explorerUID + "/audit-explorer?var-audit_id=" + auditID + "&var-cluster=" + cluster + "&${__url_time_range}"
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// Variables every ClickHouse dashboard offers. Each maps to a column.
var filterColumns = map[string]string{
	"cluster":   "cluster",
	"namespace": "namespace",
	"user":      "username",
	"detector":  "detector",
	"severity":  "severity",
}

// in returns a filter on column for variable v that the plugin turns into
// 1=1 when "All" is selected ($__conditionalAll, expanded in the browser
// before anything else), so "All" never ships a list of every value.
// ${v:singlequote} quotes each value and escapes quotes, whether the value
// is one string (a URL parameter) or a list (a multi-select).
func in(column, v string) string {
	return fmt.Sprintf("$__conditionalAll(%s IN (${%s:singlequote}), $%s)", column, v, v)
}

// where joins a time filter on timeCol and the filters for vars, each
// applied to the column it maps to.
func where(timeCol string, vars ...string) string {
	parts := []string{"$__timeFilter(" + timeCol + ")"}
	for _, v := range vars {
		parts = append(parts, in(filterColumns[v], v))
	}
	return strings.Join(parts, "\n  AND ")
}

// bucket is a time bucket of $__interval_s seconds. toStartOfInterval and
// the plugin's $__timeInterval are not available on ClickHouse 18.16.
func bucket(col string) string {
	return "toDateTime(intDiv(toUInt32(" + col + "), $__interval_s) * $__interval_s) AS time"
}

// usedVariables lists the dashboard variables sql refers to.
func usedVariables(sql string) []string {
	var out []string
	for _, v := range append(sortedFilterNames(), "audit_id") {
		if strings.Contains(sql, "${"+v+":") || strings.Contains(sql, "$"+v+")") {
			out = append(out, v)
		}
	}
	return out
}

func sortedFilterNames() []string {
	return []string{"cluster", "namespace", "user", "detector", "severity"}
}

// variable adds a multi-value ClickHouse query variable with "All" as the
// default. The query runs again when the time range changes so the list
// holds what the range holds.
func (bd *board) variable(name, label, sql string) {
	bd.b.WithVariable(bd.newVariable(name, label, sql))
}

func (bd *board) newVariable(name, label, sql string) *dashboard.QueryVariableBuilder {
	return dashboard.NewQueryVariableBuilder(name).
		Label(label).
		Datasource(clickhouseRef()).
		Query(dashboard.StringOrMap{Map: map[string]any{
			"refId":     "ClickHouseVariableQueryEditor-VariableQuery",
			"queryType": "sql",
			"rawSql":    bd.record("$"+name, sql, []string{"value"}),
		}}).
		Definition(sql).
		Multi(true).
		IncludeAll(true).
		Refresh(dashboard.VariableRefreshOnTimeRangeChanged).
		Sort(dashboard.VariableSortAlphabeticalAsc).
		Current(dashboard.VariableOption{
			Selected: cog.ToPtr(true),
			Text:     dashboard.StringOrArrayOfString{ArrayOfString: []string{"All"}},
			Value:    dashboard.StringOrArrayOfString{ArrayOfString: []string{"$__all"}},
		})
}

// standardVariables adds cluster, namespace, user, detector and severity,
// each list narrowed by the clusters already chosen. Lists come from the
// rollups where one has the column, so opening a dashboard over 30 days
// does not scan raw events.
func (bd *board) standardVariables() {
	bd.variable("cluster", "Cluster", `SELECT DISTINCT cluster AS value
FROM events_by_minute
WHERE $__timeFilter(minute)
ORDER BY value`)
	// No rollup has namespaces; the namespace column alone is read.
	bd.variable("namespace", "Namespace", `SELECT DISTINCT namespace AS value
FROM events
WHERE `+where("time", "cluster")+`
  AND namespace != ''
ORDER BY value
LIMIT 1000`)
	bd.variable("user", "User", `SELECT DISTINCT username AS value
FROM users_by_minute
WHERE `+where("minute", "cluster")+`
  AND username != ''
ORDER BY value
LIMIT 1000`)
	bd.variable("detector", "Detector", `SELECT DISTINCT detector AS value
FROM findings_by_minute
WHERE `+where("minute", "cluster")+`
ORDER BY value`)
	bd.variable("severity", "Severity", `SELECT DISTINCT severity AS value
FROM findings_by_minute
WHERE `+where("minute", "cluster", "detector")+`
ORDER BY value`)
}

// build returns the finished dashboard.
func (bd *board) build() (dashboard.Dashboard, error) {
	d, err := bd.b.Build()
	if err != nil {
		return d, fmt.Errorf("building dashboard %s: %w", bd.uid, err)
	}
	return d, nil
}
