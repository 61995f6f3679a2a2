package export

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/transition-matrix/transition-matrix/internal/recorded"
	"github.com/transition-matrix/transition-matrix/synapsedb"
)

// The files in testdata/synapse-1.163.2 were recorded from a real Synapse 1.163.2 (SQLite): the
// client API's GET /pushrules/ of three accounts and their rows of push_rules and push_rules_enable.

func rows(t *testing.T, user string) *synapsedb.PushRules {
	var r struct {
		Rules []struct {
			RuleID              string
			PriorityClass       int
			Priority            int64
			Conditions, Actions json.RawMessage
		}
		Enabled map[string]bool
	}
	recorded.JSON(t, "push_rules_rows_"+user+".json", &r)
	out := &synapsedb.PushRules{Enabled: r.Enabled}
	for _, x := range r.Rules {
		out.Rules = append(out.Rules, synapsedb.PushRule{RuleID: x.RuleID, PriorityClass: x.PriorityClass, Priority: x.Priority, Conditions: x.Conditions, Actions: x.Actions})
	}
	return out
}

func TestPushRulesFromSynapsesTablesMatchTheClientAPI(t *testing.T) {
	for _, tc := range []struct {
		name, adminView, adminRows, user string
	}{
		{"admin without changes, alice", "client_pushrules_admin.json", "", "alice"},
		{"admin with own rules and toggles, alice", "client_pushrules_admin_customised.json", "admin", "alice"},
		{"admin with own rules and toggles, bob (a sender rule naming the admin, a rule placed before another)", "client_pushrules_admin_customised.json", "admin", "bob"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var view json.RawMessage
			recorded.JSON(t, tc.adminView, &view)
			adminRows := &synapsedb.PushRules{Enabled: map[string]bool{}}
			if tc.adminRows != "" {
				adminRows = rows(t, tc.adminRows)
			}
			tmpl, err := newPushTemplate("@admin:mas.test", view, adminRows)
			if err != nil {
				t.Fatal(err)
			}
			got, err := tmpl.render("@"+tc.user+":mas.test", rows(t, tc.user))
			if err != nil {
				t.Fatal(err)
			}
			var want, have any
			recorded.JSON(t, "client_pushrules_"+tc.user+".json", &want)
			if err := json.Unmarshal(got, &have); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(have, want) {
				wg, hg := want.(map[string]any)["global"].(map[string]any), have.(map[string]any)["global"].(map[string]any)
				for k := range wg {
					if !reflect.DeepEqual(wg[k], hg[k]) {
						a, _ := json.Marshal(hg[k])
						b, _ := json.Marshal(wg[k])
						t.Errorf("kind %s:\n got %s\nwant %s", k, a, b)
					}
				}
				if len(wg) != len(hg) {
					t.Errorf("kinds: got %d, want %d", len(hg), len(wg))
				}
			}
		})
	}
}

func TestPushTemplateRefusesAnAdminThatChangedBaseActions(t *testing.T) {
	var view json.RawMessage
	recorded.JSON(t, "client_pushrules_admin.json", &view)
	own := rows(t, "alice") // alice changed .m.rule.suppress_notices' actions
	_, err := newPushTemplate("@alice:mas.test", view, own)
	if !errors.Is(err, ErrAdminPushRulesChanged) {
		t.Fatalf("err = %v, want ErrAdminPushRulesChanged", err)
	}
	for _, fix := range []string{".m.rule.suppress_notices", "register_new_matrix_user -a"} {
		if !strings.Contains(err.Error(), fix) {
			t.Errorf("message lacks %q: %v", fix, err)
		}
	}
}
