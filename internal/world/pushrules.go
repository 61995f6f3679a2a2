package world

import "encoding/json"

type pushCond = map[string]any

func evMatch(key, pattern string) pushCond {
	return pushCond{"kind": "event_match", "key": key, "pattern": pattern}
}

func rule(id string, enabled bool, actions []any, conds ...pushCond) map[string]any {
	if conds == nil {
		conds = []pushCond{}
	}
	return map[string]any{"rule_id": id, "default": true, "enabled": enabled, "conditions": conds, "actions": actions}
}

// DefaultPushRules returns the ruleset a Synapse 1.67 server reports for a
// user that never changed its push rules (GET /pushrules/ shape).
func DefaultPushRules(userID string) json.RawMessage {
	notify := func(sound string, highlight bool) []any {
		a := []any{"notify"}
		if sound != "" {
			a = append(a, map[string]any{"set_tweak": "sound", "value": sound})
		}
		return append(a, map[string]any{"set_tweak": "highlight", "value": highlight})
	}
	dont := []any{"dont_notify"}
	override := []any{
		rule(".m.rule.master", false, dont),
		rule(".m.rule.suppress_notices", true, dont, evMatch("content.msgtype", "m.notice")),
		rule(".m.rule.invite_for_me", true, notify("default", false),
			evMatch("type", "m.room.member"), evMatch("content.membership", "invite"), evMatch("state_key", userID)),
		rule(".m.rule.member_event", true, dont, evMatch("type", "m.room.member")),
		rule(".m.rule.contains_display_name", true,
			[]any{"notify", map[string]any{"set_tweak": "sound", "value": "default"}, map[string]any{"set_tweak": "highlight"}},
			pushCond{"kind": "contains_display_name"}),
		rule(".m.rule.roomnotif", true, []any{"notify", map[string]any{"set_tweak": "highlight", "value": true}},
			evMatch("content.body", "@room"), pushCond{"kind": "sender_notification_permission", "key": "room"}),
		rule(".m.rule.tombstone", true, []any{"notify", map[string]any{"set_tweak": "highlight", "value": true}},
			evMatch("type", "m.room.tombstone"), evMatch("state_key", "")),
		rule(".m.rule.reaction", true, dont, evMatch("type", "m.reaction")),
	}
	underride := []any{
		rule(".m.rule.call", true, notify("ring", false), evMatch("type", "m.call.invite")),
		rule(".m.rule.room_one_to_one", true, notify("default", false),
			pushCond{"kind": "room_member_count", "is": "2"}, evMatch("type", "m.room.message")),
		rule(".m.rule.encrypted_room_one_to_one", true, notify("default", false),
			pushCond{"kind": "room_member_count", "is": "2"}, evMatch("type", "m.room.encrypted")),
		rule(".m.rule.message", true, notify("", false), evMatch("type", "m.room.message")),
		rule(".m.rule.encrypted", true, notify("", false), evMatch("type", "m.room.encrypted")),
		rule(".im.vector.jitsi", true, notify("", false),
			evMatch("type", "im.vector.modular.widgets"), evMatch("content.type", "jitsi"), evMatch("state_key", "*")),
	}
	return mustJSON(map[string]any{
		"global": map[string]any{
			"override": override, "content": []any{}, "room": []any{}, "sender": []any{}, "underride": underride,
		},
		"device": map[string]any{},
	})
}
