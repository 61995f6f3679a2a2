// Package synapseclient reads a Synapse homeserver through its three faces, sharing one HTTP
// layer (timeouts, bounded retries with backoff, per-host concurrency limit, size-limited bodies,
// typed Matrix errors):
//
//   - AdminClient: /_synapse/admin with the admin token (users, password hashes via search_users,
//     login-as, account data, devices, pushers, rooms, state, members, messages, fetch_event);
//   - UserClient: /_matrix/client/v3 with any token, e.g. a login-as puppet token (profile,
//     account data via /sync, push rules, tags, 3pids, E2EE keys and key backups);
//   - FederationClient: /_matrix/federation/v1 signed as the server itself (origin = destination =
//     server name), returning events as the exact bytes Synapse sent.
//
// Access tokens, Authorization headers and password hashes never appear in errors.
package synapseclient
