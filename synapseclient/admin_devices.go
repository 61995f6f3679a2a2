package synapseclient

import (
	"context"
	"encoding/json"
)

// Device is one device of a user; the admin API adds LastSeenUserAgent, the client API does not.
type Device struct {
	DeviceID          string          `json:"device_id"`
	UserID            string          `json:"user_id"`
	DisplayName       *string         `json:"display_name"`
	LastSeenIP        *string         `json:"last_seen_ip"`
	LastSeenTS        *int64          `json:"last_seen_ts"`
	LastSeenUserAgent *string         `json:"last_seen_user_agent"`
	Dehydrated        Bool            `json:"dehydrated"`
	Raw               json.RawMessage `json:"-"`
}

// UnmarshalJSON decodes the fields and keeps the raw bytes.
func (d *Device) UnmarshalJSON(b []byte) error {
	type plain Device
	return decodeKeepingRaw(b, (*plain)(d), &d.Raw)
}

// Devices lists a user's devices.
// https://element-hq.github.io/synapse/latest/admin_api/user_admin_api.html#list-all-devices
func (a *AdminClient) Devices(ctx context.Context, userID string) ([]Device, error) {
	var out struct {
		Devices []Device `json:"devices"`
	}
	if err := a.get(ctx, "/_synapse/admin/v2/users/{userId}/devices", "", &out, userID); err != nil {
		return nil, err
	}
	return nonNil(out.Devices), nil
}

// Pusher is one push gateway registration of a user.
type Pusher struct {
	Kind              string          `json:"kind"`
	AppID             string          `json:"app_id"`
	AppDisplayName    string          `json:"app_display_name"`
	DeviceDisplayName string          `json:"device_display_name"`
	ProfileTag        string          `json:"profile_tag"`
	Pushkey           string          `json:"pushkey"`
	Lang              string          `json:"lang"`
	Data              json.RawMessage `json:"data"`
	Enabled           *bool           `json:"enabled"`   // absent before Synapse 1.73
	DeviceID          *string         `json:"device_id"` // absent before Synapse 1.73
	Raw               json.RawMessage `json:"-"`
}

// UnmarshalJSON decodes the fields and keeps the raw bytes.
func (p *Pusher) UnmarshalJSON(b []byte) error {
	type plain Pusher
	return decodeKeepingRaw(b, (*plain)(p), &p.Raw)
}

// Pushers lists a user's pushers.
// https://element-hq.github.io/synapse/latest/admin_api/user_admin_api.html#list-all-pushers
func (a *AdminClient) Pushers(ctx context.Context, userID string) ([]Pusher, error) {
	var out struct {
		Pushers []Pusher `json:"pushers"`
	}
	if err := a.get(ctx, "/_synapse/admin/v1/users/{userId}/pushers", "", &out, userID); err != nil {
		return nil, err
	}
	return nonNil(out.Pushers), nil
}
