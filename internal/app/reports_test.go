package app

import (
	"strings"
	"testing"
)

func TestReportsConfig(t *testing.T) {
	for _, c := range []struct {
		name string
		cfg  Config
		err  string
	}{
		{"named webhook", Config{Alerting: AlertingConfig{Webhooks: []WebhookConfig{{Name: "leaders", URL: "http://127.0.0.1:1/x"}}},
			Reports: ReportsConfig{Webhooks: []string{"leaders"}}}, ""},
		{"unnamed webhook", Config{Alerting: AlertingConfig{Webhooks: []WebhookConfig{{URL: "http://127.0.0.1:1/x"}}},
			Reports: ReportsConfig{Webhooks: []string{"webhook-0"}}}, ""},
		{"unknown webhook", Config{Alerting: AlertingConfig{Webhooks: []WebhookConfig{{Name: "leaders", URL: "http://127.0.0.1:1/x"}}},
			Reports: ReportsConfig{Webhooks: []string{"leadership"}}}, `reports.webhooks[0]: "leadership" is not the name of an alerting.webhooks entry (leaders)`},
		{"negative delay", Config{Reports: ReportsConfig{Delay: -1}}, "reports.delay"},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := c.cfg.Normalize()
			switch {
			case c.err == "" && err != nil:
				t.Errorf("got %v, want no error", err)
			case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)):
				t.Errorf("got %v, want %q", err, c.err)
			}
		})
	}
}
