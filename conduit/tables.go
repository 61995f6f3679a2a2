package conduit

import "sort"

// tables18 are the trees Conduit 0.10.x and next (database versions 17 and 18) open on every start:
// src/database/mod.rs::KeyValueDatabase::load_or_create, one SQLite table per tree
// (src/database/abstraction/sqlite.rs::open_tree). The two versions open the same 86 tables.
var tables18 = []string{
	"alias_roomid",
	"alias_userid",
	"aliasid_alias",
	"backupid_algorithm",
	"backupid_etag",
	"backupkeyid_backup",
	"blocked_servername_mediaid",
	"disabledroomids",
	"eventid_outlierpdu",
	"eventid_pduid",
	"eventid_shorteventid",
	"filehash_metadata",
	"filehash_servername_mediaid",
	"filehash_thumbnailid",
	"global",
	"id_appserviceregistrations",
	"keychangeid_userid",
	"keyid_key",
	"lazyloadedids",
	"onetimekeyid_onetimekeys",
	"openidtoken_expiresatuserid",
	"pduid_pdu",
	"presenceid_presence",
	"publicroomids",
	"readreceiptid_readreceipt",
	"referencedevents",
	"roomid_invitedcount",
	"roomid_joinedcount",
	"roomid_pduleaves",
	"roomid_shortroomid",
	"roomid_shortstatehash",
	"roomserverids",
	"roomsynctoken_shortstatehash",
	"roomuserdataid_accountdata",
	"roomuserid_invitecount",
	"roomuserid_joined",
	"roomuserid_knockcount",
	"roomuserid_lastprivatereadupdate",
	"roomuserid_leftcount",
	"roomuserid_privateread",
	"roomuseroncejoinedids",
	"roomusertype_roomuserdataid",
	"senderkey_pusher",
	"server_signingkeys",
	"servercurrentevent_data",
	"servername_educount",
	"servername_userlocalpart_mediaid",
	"servernameevent_data",
	"servernamemediaid_metadata",
	"servernamemediaid_userlocalpart",
	"serverroomids",
	"shorteventid_authchain",
	"shorteventid_eventid",
	"shorteventid_shortstatehash",
	"shortstatehash_statediff",
	"shortstatekey_statekey",
	"softfailedeventids",
	"statehash_shortstatehash",
	"statekey_shortstatekey",
	"threadid_userids",
	"thumbnailid_metadata",
	"todeviceid_events",
	"tofrom_relation",
	"token_userdeviceid",
	"tokenids",
	"userdeviceid_metadata",
	"userdeviceid_token",
	"userdevicesessionid_uiaainfo",
	"userdevicetxnid_response",
	"userfilterid_filter",
	"userid_avatarurl",
	"userid_blurhash",
	"userid_devicelistversion",
	"userid_displayname",
	"userid_lastonetimekeyupdate",
	"userid_lastpresenceupdate",
	"userid_masterkeyid",
	"userid_password",
	"userid_selfsigningkeyid",
	"userid_usersigningkeyid",
	"userroomid_highlightcount",
	"userroomid_invitestate",
	"userroomid_joined",
	"userroomid_knockstate",
	"userroomid_leftstate",
	"userroomid_notificationcount",
}

// tables16 are the trees Conduit 0.9.0 (database version 16) opens on every start, same source
// path: those of 0.10 without the content-addressed media, knock and media-blocking trees, plus
// mediaid_file.
var tables16 = tablesOf16()

// newIn10 are the trees Conduit 0.10 opens that 0.9.0 did not.
var newIn10 = map[string]bool{
	"blocked_servername_mediaid": true, "filehash_metadata": true, "filehash_servername_mediaid": true,
	"filehash_thumbnailid": true, "roomuserid_knockcount": true, "servername_userlocalpart_mediaid": true,
	"servernamemediaid_metadata": true, "servernamemediaid_userlocalpart": true, "thumbnailid_metadata": true,
	"userroomid_knockstate": true,
}

func tablesOf16() []string {
	out := []string{}
	for _, t := range tables18 {
		if !newIn10[t] {
			out = append(out, t)
		}
	}
	out = append(out, "mediaid_file")
	sort.Strings(out)
	return out
}
