package conduit_test

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/transition-matrix/transition-matrix/conduit"
)

// BenchmarkUpdate1000Users5Devices writes 1,000 users with 5 devices each (device, device keys,
// token, one one-time key), push rules and a pusher, one Update per user as the importer does; then
// the same again, which must change nothing.
func BenchmarkUpdate1000Users5Devices(b *testing.B) {
	const users, devices = 1000, 5
	writeUser := func(i int) func(tx *conduit.Tx) error {
		return func(tx *conduit.Tx) error {
			id := fmt.Sprintf("@user%04d:example.org", i)
			if err := tx.PutUser(conduit.User{ID: id, PasswordHash: "$2b$12$0123456789012345678901234567890123456789012345678901", DisplayName: "User"}); err != nil {
				return err
			}
			for d := 0; d < devices; d++ {
				dev := fmt.Sprintf("DEV%d", d)
				if err := tx.PutDevice(id, conduit.Device{ID: dev, DisplayName: "phone", LastSeenTS: 1700000000000}); err != nil {
					return err
				}
				keys := fmt.Sprintf(`{"user_id":%q,"device_id":%q,"algorithms":["m.olm.v1.curve25519-aes-sha2","m.megolm.v1.aes-sha2"],"keys":{"curve25519:%s":"3C5BFWi2Y8MaVvjM8M22DBmh24PmgR0nPvJOIArzgyI","ed25519:%s":"lEuiRJBit0IG6nUf5pUzWTUEsRVVe/HJkoKuEww9ULI"},"signatures":{%q:{"ed25519:%s":"dSO80A01XiigH3uBiDVx/EjzaoycHcjq9lfQX0uWsqxl2giMIiSPR8a4d291W1ihKJL/a+myXS367WT6NAIcBA"}}}`, id, dev, dev, dev, id, dev)
				if err := tx.PutDeviceKeys(id, dev, json.RawMessage(keys)); err != nil {
					return err
				}
				if err := tx.PutAccessToken(id, dev, fmt.Sprintf("syt_%d_%d_abcdefghijklmnopqrst", i, d)); err != nil {
					return err
				}
				if err := tx.PutOneTimeKey(id, dev, "signed_curve25519:AAAAAQ", json.RawMessage(`{"key":"zKbLg+NrIjpnagy+pIY6uPL4ZwEG2v+8F9lmgsnlZzs"}`)); err != nil {
					return err
				}
			}
			if err := tx.PutAccountData("", id, "m.push_rules", json.RawMessage(`{"global":{"override":[],"underride":[]}}`)); err != nil {
				return err
			}
			return tx.PutPusher(id, json.RawMessage(`{"pushkey":"pk","kind":"http","app_id":"im.app","app_display_name":"App","device_display_name":"phone","lang":"en","data":{"url":"https://push.example/_matrix/push/v1/notify"}}`))
		}
	}
	for n := 0; n < b.N; n++ {
		b.StopTimer()
		dir := freshDir(b)
		db, err := conduit.Open(dir, conduit.Options{ServerName: server})
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		start := time.Now()
		var total conduit.Changes
		for i := 0; i < users; i++ {
			ch, err := db.Update(writeUser(i))
			if err != nil {
				b.Fatal(err)
			}
			total = total.Add(ch)
		}
		first := time.Since(start)
		for i := 0; i < users; i++ {
			ch, err := db.Update(writeUser(i))
			if err != nil {
				b.Fatal(err)
			}
			if ch.Total() != 0 {
				b.Fatalf("second run changed %+v", ch)
			}
		}
		b.StopTimer()
		db.Close()
		b.ReportMetric(float64(total.Written), "rows/op")
		b.ReportMetric(first.Seconds()*1000/users, "ms/user-first")
		b.ReportMetric((time.Since(start)-first).Seconds()*1000/users, "ms/user-rerun")
		b.StartTimer()
	}
}
