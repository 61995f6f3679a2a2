package export

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/transition-matrix/transition-matrix/synapsedb"
)

// ErrAdminPushRulesChanged: the admin's own account changed the actions of a base push rule, so its
// rule set cannot stand for every user's defaults.
var ErrAdminPushRulesChanged = errors.New("the admin account changed the actions of a base push rule")

// pushKinds are the priority classes of Synapse's push_rules table by kind (synapse/push/rulekinds.py);
// -1 marks new actions for a base rule.
var pushKinds = map[int]string{1: "underride", 2: "sender", 3: "room", 4: "content", 5: "override", 6: "postcontent"}

// prependOverride are the base override rules Synapse puts before the user's own override rules.
var prependOverride = map[string]bool{".m.rule.master": true}

// pushRule is one rule of the client format, its members in the order Synapse writes them.
type pushRule = map[string]any

// pushTemplate is the base rule set as Synapse shows it to the admin, with the admin's own rules,
// enabled flags and user IDs taken out: what every user has before their own changes.
type pushTemplate struct {
	kinds   []string                   // the kinds Synapse lists, in its order
	base    map[string][]pushRule      // kind → base rules in order
	enabled map[string]map[string]bool // kind → rule ID → default enabled
	adminID string
}

// newPushTemplate derives the base rules from the admin's own m.push_rules (adminView, as the
// client API gave it) and the admin's rows in push_rules and push_rules_enable.
func newPushTemplate(adminID string, adminView json.RawMessage, own *synapsedb.PushRules) (*pushTemplate, error) {
	var view struct {
		Global map[string][]pushRule `json:"global"`
	}
	dec := json.NewDecoder(strings.NewReader(string(adminView)))
	dec.UseNumber()
	if err := dec.Decode(&view); err != nil || view.Global == nil {
		return nil, fmt.Errorf("the admin's push rules are not a rule set (%v)", err)
	}
	for _, r := range own.Rules {
		if r.PriorityClass == -1 {
			return nil, fmt.Errorf("%w (%s): the admin's rule set stands for every user's defaults; reset that rule, or use the token of an admin account that changed no base rule (register_new_matrix_user -a)", ErrAdminPushRulesChanged, r.RuleID)
		}
	}
	t := &pushTemplate{base: map[string][]pushRule{}, enabled: map[string]map[string]bool{}, adminID: adminID}
	for _, k := range []string{"override", "content", "postcontent", "room", "sender", "underride"} {
		if _, ok := view.Global[k]; ok {
			t.kinds = append(t.kinds, k)
		}
	}
	for k := range view.Global {
		if _, known := pushKindClass(k); !known {
			return nil, fmt.Errorf("the admin's push rules have a kind %q this shim does not know", k)
		}
	}
	for _, k := range t.kinds {
		t.enabled[k] = map[string]bool{}
		for _, r := range view.Global[k] {
			if d, _ := r["default"].(bool); !d {
				continue // the admin's own rule
			}
			id, _ := r["rule_id"].(string)
			en, _ := r["enabled"].(bool)
			if _, changed := own.Enabled["global/"+k+"/"+id]; changed {
				// The admin toggled it: every base rule is on by default but the master rule.
				en = id != ".m.rule.master"
			}
			rule := pushRule{}
			for key, v := range r {
				if key != "enabled" {
					rule[key] = v
				}
			}
			t.base[k] = append(t.base[k], rule)
			t.enabled[k][id] = en
		}
	}
	return t, nil
}

func pushKindClass(kind string) (int, bool) {
	for c, k := range pushKinds {
		if k == kind {
			return c, true
		}
	}
	return 0, false
}

// render builds the m.push_rules content Synapse would show userID: the base rules (the admin's
// user ID and localpart replaced by the user's), the user's own rules where Synapse places them,
// the user's new actions for base rules and their enabled flags.
func (t *pushTemplate) render(userID string, own *synapsedb.PushRules) (json.RawMessage, error) {
	type ownRule struct {
		rule pushRule
		key  string // the namespaced ID, as push_rules_enable names it
	}
	userRules := map[string][]ownRule{}
	baseActions := map[string]json.RawMessage{} // "kind/rule ID" → actions
	for _, r := range own.Rules {
		parts := strings.SplitN(r.RuleID, "/", 3)
		if len(parts) != 3 || parts[0] != "global" {
			return nil, fmt.Errorf("push rule %q of %s is not global/<kind>/<id>", r.RuleID, userID)
		}
		if r.PriorityClass == -1 {
			baseActions[parts[1]+"/"+parts[2]] = r.Actions
			continue
		}
		kind, ok := pushKinds[r.PriorityClass]
		if !ok {
			return nil, fmt.Errorf("push rule %s of %s has priority class %d, which this shim does not know", r.RuleID, userID, r.PriorityClass)
		}
		rule, err := userRule(kind, parts[2], r, userID)
		if err != nil {
			return nil, err
		}
		if rule != nil {
			userRules[kind] = append(userRules[kind], ownRule{rule, r.RuleID})
		}
	}
	global := map[string][]pushRule{}
	for _, k := range t.kinds {
		var base []pushRule
		for _, b := range t.base[k] {
			id, _ := b["rule_id"].(string)
			rule := t.personal(b, userID)
			if a, ok := baseActions[k+"/"+id]; ok {
				var actions any
				if err := json.Unmarshal(a, &actions); err != nil {
					return nil, fmt.Errorf("actions of base push rule %s of %s: %w", id, userID, err)
				}
				rule["actions"] = actions
			}
			rule["enabled"] = t.enabled[k][id]
			if e, ok := own.Enabled["global/"+k+"/"+id]; ok {
				rule["enabled"] = e
			}
			base = append(base, rule)
		}
		var list []pushRule
		if k == "override" {
			for _, b := range base {
				if prependOverride[b["rule_id"].(string)] {
					list = append(list, b)
				}
			}
		}
		for _, r := range userRules[k] {
			r.rule["enabled"] = true
			if e, ok := own.Enabled[r.key]; ok {
				r.rule["enabled"] = e
			}
			list = append(list, r.rule)
		}
		for _, b := range base {
			if k != "override" || !prependOverride[b["rule_id"].(string)] {
				list = append(list, b)
			}
		}
		if list == nil {
			list = []pushRule{}
		}
		global[k] = list
	}
	return json.Marshal(map[string]any{"global": global})
}

// userRule is one of the user's own rules in the client format (synapse/push/clientformat.py):
// override, underride and postcontent keep their conditions; room and sender rules are named by
// their condition's pattern; content rules show that pattern. nil for a content rule Synapse hides.
func userRule(kind, id string, r synapsedb.PushRule, userID string) (pushRule, error) {
	var conds []map[string]any
	dec := json.NewDecoder(strings.NewReader(string(r.Conditions)))
	dec.UseNumber()
	if err := dec.Decode(&conds); err != nil {
		return nil, fmt.Errorf("conditions of push rule %s of %s: %w", r.RuleID, userID, err)
	}
	var actions any
	dec = json.NewDecoder(strings.NewReader(string(r.Actions)))
	dec.UseNumber()
	if err := dec.Decode(&actions); err != nil {
		return nil, fmt.Errorf("actions of push rule %s of %s: %w", r.RuleID, userID, err)
	}
	for _, c := range conds {
		typeToValue(c, userID)
	}
	rule := pushRule{"actions": actions, "default": false}
	switch kind {
	case "override", "underride", "postcontent":
		if conds == nil {
			conds = []map[string]any{}
		}
		rule["conditions"] = conds
		rule["rule_id"] = id
	case "room", "sender":
		if len(conds) == 0 {
			return nil, fmt.Errorf("%s push rule %s of %s has no condition", kind, r.RuleID, userID)
		}
		p, _ := conds[0]["pattern"].(string)
		rule["rule_id"] = p
	case "content":
		if len(conds) != 1 {
			return nil, nil
		}
		switch {
		case conds[0]["pattern"] != nil:
			rule["pattern"] = conds[0]["pattern"]
		default:
			return nil, nil
		}
		rule["rule_id"] = id
	}
	return rule, nil
}

// typeToValue replaces pattern_type/value_type "user_id" and "user_localpart" by the user's.
func typeToValue(m map[string]any, userID string) {
	for _, key := range []string{"pattern", "value"} {
		switch m[key+"_type"] {
		case "user_id":
			m[key] = userID
		case "user_localpart":
			m[key] = localpart(userID)
		default:
			continue
		}
		delete(m, key+"_type")
	}
}

func localpart(userID string) string {
	lp, _, _ := strings.Cut(strings.TrimPrefix(userID, "@"), ":")
	return lp
}

// personal copies a base rule with the admin's user ID (conditions' pattern and value) and the
// admin's localpart (a content rule's pattern) replaced by the user's, as Synapse fills them in.
func (t *pushTemplate) personal(b pushRule, userID string) pushRule {
	out := pushRule{}
	for k, v := range b {
		out[k] = v
	}
	if p, ok := out["pattern"].(string); ok && p == localpart(t.adminID) {
		out["pattern"] = localpart(userID)
	}
	if conds, ok := b["conditions"].([]any); ok {
		nc := make([]any, len(conds))
		for i, c := range conds {
			cm, ok := c.(map[string]any)
			if !ok {
				nc[i] = c
				continue
			}
			m := map[string]any{}
			for k, v := range cm {
				if s, ok := v.(string); ok && (k == "pattern" || k == "value") && s == t.adminID {
					v = userID
				}
				m[k] = v
			}
			nc[i] = m
		}
		out["conditions"] = nc
	}
	return out
}
