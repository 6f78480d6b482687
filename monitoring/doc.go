// Package monitoring holds no code: it is the home of the example
// Prometheus alerting rules (ringfence-alerts.yml, with promtool unit tests
// in ringfence-alerts.test.yml) and the Grafana dashboard
// (grafana-dashboard.json) for ringfence-server's /metrics, and of the test
// that keeps them true: every metric and label they name is one a real
// server exposes, the rules pass `promtool check rules` and `promtool test
// rules` where promtool is installed, and the dashboard is valid JSON whose
// queries cover every ringfence_ metric. docs/server.md ("Metrics") says
// how to load them.
package monitoring
