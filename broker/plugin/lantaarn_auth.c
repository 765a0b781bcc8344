/*
 * lantaarn's Mosquitto 2.0 plugin (plugin API v5): who may log in, as which client id, and what a
 * device may subscribe to and how fast it may publish.
 *
 * Mosquitto's own password file and ACL cannot say these things:
 *  - Mosquitto 2.0 grants every SUBSCRIBE and checks `read` only per delivered message, so a device
 *    could join the ingest workers' shared subscription (taking its turns, receiving nothing);
 *  - client ids are not bound to logins, so any login could take `ingest-0` or another device's id
 *    and the broker would cut the holder off (and, with clean start, delete its session);
 *  - failed logins are not counted, so a password can be guessed as fast as the broker answers;
 *  - a connection made with a certificate stays open after the certificate is revoked: Mosquitto
 *    checks its `crlfile` only when a connection is made.
 *
 * Logins are checked here against the same `$7$` password file Mosquitto reads (PBKDF2-SHA512),
 * because only the check that decides knows a login failed. Read permissions stay in the ACL file:
 * this plugin only ever refuses, and defers every other question to it.
 *
 * Options (plugin_opt_NAME):
 *   password_file        the `user:$7$...` file written by `lantaarn broker-config` (required)
 *   topic_prefix         device topics start with this and then the login (`lantaarn/v1/`)
 *   reserved_client_ids  `login=prefix,...`: client ids with `prefix` only for `login`
 *   share_groups         `login=group,...`: `$share/group/...` only for `login`; a shared group
 *                        not listed is no one's (shared subscriptions take turns: a stranger in
 *                        the ingest group would take the workers' turns)
 *   auth_failures        failed logins per address per window before refusing it (0: no limit)
 *   auth_window_s        that window in seconds
 *   publish_rate         messages a second a device may publish on average (0: no limit)
 *   publish_burst        messages a device may publish at once above that rate
 *   crl_file             the certificate listener's `crlfile`, written by `lantaarn pki`: on every
 *                        reload a device whose certificate is newly in it is disconnected
 *
 * A device's login contains a '/' (`{tenant}/{deviceId}`); a service's login never does.
 */

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <mosquitto.h>
#include <mosquitto_broker.h>
#include <mosquitto_plugin.h>

#define DIGEST_BYTES 64
#define MAX_SALT_BYTES 64
#define PROBES 8
#define ADDRESS_SLOTS 4096
#define DEVICE_SLOTS 65536
#define MAX_RESERVED 16
#define MAX_CRL_BYTES (256L * 1024 * 1024)

struct login {
	char *username;
	int iterations;
	unsigned char salt[MAX_SALT_BYTES];
	int salt_len;
	unsigned char digest[DIGEST_BYTES];
};

/* A bounded table of counters keyed by a string; the oldest probe slot is reused when full. */
struct slot {
	char key[128];
	double level;    /* failures so far, or tokens left */
	time_t since;    /* window start, or last refill */
	bool used;
};

struct reserved {
	char *login;
	char *prefix;
};

/* A revoked certificate: its serial in hex, and whose it is (NULL: unknown). */
struct revoked {
	char *serial;
	char *identity;
};

struct state {
	mosquitto_plugin_id_t *id;
	char *password_file;
	struct stat seen;
	struct login *logins;
	size_t login_count;
	char *topic_prefix;
	struct reserved reserved[MAX_RESERVED];
	int reserved_count;
	struct reserved groups[MAX_RESERVED];
	int group_count;
	int auth_failures;
	int auth_window_s;
	double publish_rate;
	double publish_burst;
	struct slot *addresses;
	struct slot *devices;
	char *crl_file;
	struct stat crl_seen;
	struct revoked *revoked;
	size_t revoked_count;
};

static struct state plugin;

static uint64_t hash_key(const char *key)
{
	uint64_t h = 1469598103934665603ULL; /* FNV-1a */
	for(; *key; key++){
		h ^= (unsigned char)*key;
		h *= 1099511628211ULL;
	}
	return h;
}

static struct slot *slot_for(struct slot *table, size_t size, const char *key, bool create)
{
	uint64_t h = hash_key(key);
	struct slot *oldest = NULL;
	for(int i = 0; i < PROBES; i++){
		struct slot *s = &table[(h + (uint64_t)i) % size];
		if(s->used && !strncmp(s->key, key, sizeof(s->key) - 1)){
			return s;
		}
		if(!s->used){
			if(!oldest || oldest->used) oldest = s;
		}else if(!oldest || (oldest->used && s->since < oldest->since)){
			oldest = s;
		}
	}
	if(!create) return NULL;
	memset(oldest, 0, sizeof(*oldest));
	snprintf(oldest->key, sizeof(oldest->key), "%s", key);
	oldest->used = true;
	return oldest;
}

/* Base64 into at most `max` bytes; the decoded length, or -1. */
static int decode_base64(const char *text, size_t len, unsigned char *out, int max)
{
	unsigned char buffer[128];
	if(len == 0 || len % 4 != 0 || len / 4 * 3 > sizeof(buffer)) return -1;
	int n = EVP_DecodeBlock(buffer, (const unsigned char *)text, (int)len);
	if(n < 0) return -1;
	if(text[len - 1] == '=') n--;
	if(text[len - 2] == '=') n--;
	if(n > max) return -1;
	memcpy(out, buffer, (size_t)n);
	return n;
}

static bool parse_login(char *line, struct login *login)
{
	/* user:$7$iterations$salt$digest */
	char *colon = strrchr(line, ':');
	if(!colon || colon == line) return false;
	*colon = '\0';
	char *hash = colon + 1;
	if(strncmp(hash, "$7$", 3)) return false;
	char *iterations = hash + 3;
	char *salt = strchr(iterations, '$');
	if(!salt) return false;
	*salt++ = '\0';
	char *digest = strchr(salt, '$');
	if(!digest) return false;
	*digest++ = '\0';
	char *end = NULL;
	long count = strtol(iterations, &end, 10);
	if(*end || count < 1 || count > 100000000) return false;
	login->iterations = (int)count;
	login->salt_len = decode_base64(salt, strlen(salt), login->salt, MAX_SALT_BYTES);
	if(login->salt_len <= 0) return false;
	if(decode_base64(digest, strlen(digest), login->digest, DIGEST_BYTES) != DIGEST_BYTES) return false;
	login->username = mosquitto_strdup(line);
	return login->username != NULL;
}

static void free_logins(struct login *logins, size_t count)
{
	for(size_t i = 0; i < count; i++) mosquitto_free(logins[i].username);
	mosquitto_free(logins);
}

static int by_username(const void *a, const void *b)
{
	return strcmp(((const struct login *)a)->username, ((const struct login *)b)->username);
}

static bool same_file(const struct stat *a, const struct stat *b)
{
	return a->st_ino == b->st_ino && a->st_size == b->st_size
		&& a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec;
}

/* (Re)read the password file when it changed; on failure keep what we had. */
static int load_logins(void)
{
	struct stat now;
	if(stat(plugin.password_file, &now)){
		mosquitto_log_printf(MOSQ_LOG_ERR, "lantaarn: cannot read %s: %s",
				plugin.password_file, strerror(errno));
		return MOSQ_ERR_UNKNOWN;
	}
	if(plugin.logins && same_file(&now, &plugin.seen)){
		return MOSQ_ERR_SUCCESS;
	}
	FILE *file = fopen(plugin.password_file, "r");
	if(!file){
		mosquitto_log_printf(MOSQ_LOG_ERR, "lantaarn: cannot open %s: %s",
				plugin.password_file, strerror(errno));
		return MOSQ_ERR_UNKNOWN;
	}
	size_t count = 0, capacity = 64;
	struct login *logins = mosquitto_calloc(capacity, sizeof(*logins));
	char *line = NULL;
	size_t line_size = 0;
	ssize_t read;
	int rc = MOSQ_ERR_SUCCESS;
	while(logins && (read = getline(&line, &line_size, file)) != -1){
		while(read > 0 && (line[read - 1] == '\n' || line[read - 1] == '\r')) line[--read] = '\0';
		if(read == 0 || line[0] == '#') continue;
		if(count == capacity){
			capacity *= 2;
			struct login *bigger = mosquitto_realloc(logins, capacity * sizeof(*logins));
			if(!bigger){
				rc = MOSQ_ERR_NOMEM;
				break;
			}
			logins = bigger;
		}
		memset(&logins[count], 0, sizeof(logins[count]));
		if(parse_login(line, &logins[count])){
			count++;
		}else{
			mosquitto_log_printf(MOSQ_LOG_WARNING, "lantaarn: skipped a malformed line in %s",
					plugin.password_file);
		}
	}
	free(line);
	fclose(file);
	if(!logins) return MOSQ_ERR_NOMEM;
	if(rc != MOSQ_ERR_SUCCESS){
		free_logins(logins, count);
		return rc;
	}
	qsort(logins, count, sizeof(*logins), by_username);
	/* A login that is gone (a retired device) loses its connections now, on every listener: a
	 * device's certificate identity is its login too. */
	for(size_t i = 0; i < plugin.login_count; i++){
		struct login *old = &plugin.logins[i];
		if(!bsearch(old, logins, count, sizeof(*logins), by_username)){
			mosquitto_log_printf(MOSQ_LOG_NOTICE, "lantaarn: %s has no login any more; disconnecting it",
					old->username);
			mosquitto_kick_client_by_username(old->username, false);
		}
	}
	free_logins(plugin.logins, plugin.login_count);
	plugin.logins = logins;
	plugin.login_count = count;
	plugin.seen = now;
	mosquitto_log_printf(MOSQ_LOG_INFO, "lantaarn: %zu logins from %s", count, plugin.password_file);
	return MOSQ_ERR_SUCCESS;
}

static bool is_device(const char *username)
{
	return username && strchr(username, '/') != NULL;
}

/* A hex serial without its leading zeros: OpenSSL prints whole bytes (`0F12`), Python does not. */
static const char *significant(const char *hex)
{
	while(hex[0] == '0' && hex[1]) hex++;
	return hex;
}

static int by_serial(const void *a, const void *b)
{
	return strcasecmp(significant(((const struct revoked *)a)->serial),
			significant(((const struct revoked *)b)->serial));
}

static void free_revoked(struct revoked *list, size_t count)
{
	for(size_t i = 0; i < count; i++){
		mosquitto_free(list[i].serial);
		mosquitto_free(list[i].identity);
	}
	mosquitto_free(list);
}

/* The whole of `path`, NUL-terminated, its length in `size` and what stat says of it in `st`;
 * NULL (logged) when unreadable. */
static char *read_whole(const char *path, size_t *size, struct stat *st)
{
	FILE *file = fopen(path, "rb");
	if(!file){
		mosquitto_log_printf(MOSQ_LOG_ERR, "lantaarn: cannot open %s: %s", path, strerror(errno));
		return NULL;
	}
	char *data = NULL;
	if(!fstat(fileno(file), st) && st->st_size <= MAX_CRL_BYTES){
		data = mosquitto_malloc((size_t)st->st_size + 1);
		if(data){
			*size = fread(data, 1, (size_t)st->st_size, file);
			data[*size] = '\0';
		}
	}else{
		mosquitto_log_printf(MOSQ_LOG_ERR, "lantaarn: %s is unreadable or too large", path);
	}
	fclose(file);
	return data;
}

/* The serials of the CRL in `text`, sorted; NULL when it holds none that OpenSSL can read. */
static struct revoked *crl_serials(const char *text, size_t size, size_t *count)
{
	BIO *bio = BIO_new_mem_buf(text, (int)size);
	X509_CRL *crl = bio ? PEM_read_bio_X509_CRL(bio, NULL, NULL, NULL) : NULL;
	BIO_free(bio);
	if(!crl) return NULL;
	STACK_OF(X509_REVOKED) *entries = X509_CRL_get_REVOKED(crl);
	int n = entries ? sk_X509_REVOKED_num(entries) : 0;
	struct revoked *list = mosquitto_calloc(n > 0 ? (size_t)n : 1, sizeof(*list));
	*count = 0;
	for(int i = 0; list && i < n; i++){
		const ASN1_INTEGER *serial = X509_REVOKED_get0_serialNumber(sk_X509_REVOKED_value(entries, i));
		BIGNUM *number = ASN1_INTEGER_to_BN(serial, NULL);
		char *hex = number ? BN_bn2hex(number) : NULL;
		BN_free(number);
		if(hex && (list[*count].serial = mosquitto_strdup(hex)) != NULL) (*count)++;
		OPENSSL_free(hex);
	}
	X509_CRL_free(crl);
	if(list) qsort(list, *count, sizeof(*list), by_serial);
	return list;
}

/* Name the serials of `list` from the `revoked SERIAL IDENTITY` lines `lantaarn pki` writes before
 * the PEM block (a CRL itself carries serials only). A line whose serial the signed CRL does not
 * list names nothing. Cuts `text` into lines. */
static void name_revoked(char *text, struct revoked *list, size_t count)
{
	char *line = text;
	while(line && *line && strncmp(line, "-----BEGIN", 10)){
		char *end = strchr(line, '\n');
		if(end) *end = '\0';
		char serial[128], identity[256];
		if(sscanf(line, "revoked %127s %255s", serial, identity) == 2){
			struct revoked key = {.serial = serial};
			struct revoked *entry = bsearch(&key, list, count, sizeof(key), by_serial);
			if(entry && !entry->identity) entry->identity = mosquitto_strdup(identity);
		}
		line = end ? end + 1 : NULL;
	}
}

/* (Re)read the CRL; with `disconnect`, cut the device of every certificate newly revoked. On failure
 * keep what we had: Mosquitto refuses a revoked certificate's new connections by itself. */
static int load_crl(bool disconnect)
{
	struct stat now;
	/* Most reloads are for logins: a CRL of 100,000 serials takes a third of a second to read. */
	if(plugin.revoked && !stat(plugin.crl_file, &now) && same_file(&now, &plugin.crl_seen)){
		return MOSQ_ERR_SUCCESS;
	}
	size_t size = 0, count = 0;
	char *text = read_whole(plugin.crl_file, &size, &now);
	if(!text) return MOSQ_ERR_UNKNOWN;
	struct revoked *list = crl_serials(text, size, &count);
	if(!list){
		mosquitto_log_printf(MOSQ_LOG_ERR, "lantaarn: %s holds no CRL that OpenSSL reads",
				plugin.crl_file);
		mosquitto_free(text);
		return MOSQ_ERR_UNKNOWN;
	}
	name_revoked(text, list, count);
	mosquitto_free(text);
	for(size_t i = 0; disconnect && i < count; i++){
		struct revoked *entry = &list[i];
		if(bsearch(entry, plugin.revoked, plugin.revoked_count, sizeof(*entry), by_serial)) continue;
		if(!entry->identity || !is_device(entry->identity)){
			mosquitto_log_printf(MOSQ_LOG_WARNING,
					"lantaarn: certificate %s is newly revoked but %s does not say whose: "
					"a connection made with it stays open", entry->serial, plugin.crl_file);
			continue;
		}
		/* The device may also be logged in with its password: that connection goes too, and may
		 * come back, as a certificate's cannot. */
		mosquitto_log_printf(MOSQ_LOG_NOTICE,
				"lantaarn: certificate %s of %s is revoked; disconnecting it",
				entry->serial, entry->identity);
		mosquitto_kick_client_by_username(entry->identity, false);
	}
	free_revoked(plugin.revoked, plugin.revoked_count);
	plugin.revoked = list;
	plugin.revoked_count = count;
	plugin.crl_seen = now;
	mosquitto_log_printf(MOSQ_LOG_INFO, "lantaarn: %zu revoked certificates in %s", count,
			plugin.crl_file);
	return MOSQ_ERR_SUCCESS;
}

static bool password_matches(const char *username, const char *password)
{
	struct login key = {.username = (char *)username};
	struct login *login = bsearch(&key, plugin.logins, plugin.login_count, sizeof(key), by_username);
	if(!login || !password) return false;
	unsigned char digest[DIGEST_BYTES];
	if(!PKCS5_PBKDF2_HMAC(password, (int)strlen(password), login->salt, login->salt_len,
			login->iterations, EVP_sha512(), DIGEST_BYTES, digest)){
		return false;
	}
	return CRYPTO_memcmp(digest, login->digest, DIGEST_BYTES) == 0;
}

static bool starts_with(const char *text, const char *prefix)
{
	return strncmp(text, prefix, strlen(prefix)) == 0;
}

/* Whether `username` may connect as `client_id`: a device only as itself, and the reserved
 * prefixes (the ingest workers' ids) only for the login they belong to. */
static bool client_id_allowed(const char *username, const char *client_id)
{
	if(!client_id) return false;
	if(is_device(username)) return strcmp(client_id, username) == 0;
	if(strchr(client_id, '/')) return false; /* a service never poses as a device */
	for(int i = 0; i < plugin.reserved_count; i++){
		if(starts_with(client_id, plugin.reserved[i].prefix)
				&& strcmp(username, plugin.reserved[i].login)){
			return false;
		}
	}
	return true;
}

/* Whether `username` may subscribe to the shared subscription `filter` ($share/group/...). */
static bool owns_share_group(const char *username, const char *filter)
{
	const char *group = filter + strlen("$share/");
	const char *end = strchr(group, '/');
	if(!username || !end) return false;
	size_t len = (size_t)(end - group);
	for(int i = 0; i < plugin.group_count; i++){
		if(!strcmp(username, plugin.groups[i].login) && strlen(plugin.groups[i].prefix) == len
				&& !strncmp(group, plugin.groups[i].prefix, len)){
			return true;
		}
	}
	return false;
}

static bool address_blocked(const char *address, time_t now)
{
	if(plugin.auth_failures <= 0 || !address) return false;
	struct slot *s = slot_for(plugin.addresses, ADDRESS_SLOTS, address, false);
	if(!s) return false;
	if(now - s->since >= plugin.auth_window_s){
		s->used = false;
		return false;
	}
	return s->level >= plugin.auth_failures;
}

static void count_failure(const char *address, time_t now)
{
	if(plugin.auth_failures <= 0 || !address) return;
	struct slot *s = slot_for(plugin.addresses, ADDRESS_SLOTS, address, true);
	if(s->level == 0 || now - s->since >= plugin.auth_window_s){
		s->since = now;
		s->level = 0;
	}
	s->level += 1;
	if(s->level == plugin.auth_failures){
		mosquitto_log_printf(MOSQ_LOG_WARNING,
				"lantaarn: %d failed logins from %s; refusing it for up to %d s",
				plugin.auth_failures, address, plugin.auth_window_s);
	}
}

static int on_basic_auth(int event, void *event_data, void *userdata)
{
	struct mosquitto_evt_basic_auth *ed = event_data;
	(void)event;
	(void)userdata;
	const char *address = mosquitto_client_address(ed->client);
	time_t now = time(NULL);
	if(address_blocked(address, now)){
		return MOSQ_ERR_AUTH;
	}
	if(!ed->username){
		return MOSQ_ERR_PLUGIN_DEFER; /* allow_anonymous decides */
	}
	load_logins();
	if(!password_matches(ed->username, ed->password)){
		count_failure(address, now);
		return MOSQ_ERR_AUTH;
	}
	const char *client_id = mosquitto_client_id(ed->client);
	if(!client_id_allowed(ed->username, client_id)){
		mosquitto_log_printf(MOSQ_LOG_NOTICE, "lantaarn: refused %s as client id %s from %s",
				ed->username, client_id ? client_id : "(none)", address ? address : "?");
		count_failure(address, now);
		return MOSQ_ERR_AUTH;
	}
	return MOSQ_ERR_SUCCESS;
}

/* A device subscribes to its own command topic and nothing else: no wildcards, no $share. */
static bool own_command_topic(const char *username, const char *filter)
{
	size_t prefix = strlen(plugin.topic_prefix), user = strlen(username);
	return !strncmp(filter, plugin.topic_prefix, prefix)
		&& !strncmp(filter + prefix, username, user)
		&& !strcmp(filter + prefix + user, "/cmd");
}

static bool within_rate(const char *username)
{
	if(plugin.publish_rate <= 0) return true;
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	struct slot *s = slot_for(plugin.devices, DEVICE_SLOTS, username, false);
	if(!s){
		s = slot_for(plugin.devices, DEVICE_SLOTS, username, true);
		s->level = plugin.publish_burst;
		s->since = ts.tv_sec;
	}
	/* Whole seconds are enough resolution for a bucket that holds `publish_burst` messages. */
	double refill = (double)(ts.tv_sec - s->since) * plugin.publish_rate;
	if(refill > 0){
		s->level = s->level + refill > plugin.publish_burst ? plugin.publish_burst : s->level + refill;
		s->since = ts.tv_sec;
	}
	if(s->level < 1) return false;
	s->level -= 1;
	return true;
}

static int on_acl_check(int event, void *event_data, void *userdata)
{
	struct mosquitto_evt_acl_check *ed = event_data;
	(void)event;
	(void)userdata;
	const char *username = mosquitto_client_username(ed->client);
	if(!is_device(username)){
		/* Shared subscriptions take turns: a group is its owner's alone, or another service
		 * could take the ingest workers' turns. */
		if(ed->access == MOSQ_ACL_SUBSCRIBE && starts_with(ed->topic, "$share/")
				&& !owns_share_group(username, ed->topic)){
			return MOSQ_ERR_ACL_DENIED;
		}
		return MOSQ_ERR_PLUGIN_DEFER;
	}
	if(ed->access == MOSQ_ACL_SUBSCRIBE){
		return own_command_topic(username, ed->topic) ? MOSQ_ERR_PLUGIN_DEFER : MOSQ_ERR_ACL_DENIED;
	}
	if(ed->access == MOSQ_ACL_WRITE && !within_rate(username)){
		return MOSQ_ERR_ACL_DENIED;
	}
	return MOSQ_ERR_PLUGIN_DEFER; /* the ACL file decides */
}

static int on_reload(int event, void *event_data, void *userdata)
{
	(void)event;
	(void)event_data;
	(void)userdata;
	/* Read the file again even if it looks unchanged; a file that cannot be read keeps the logins
	 * we had (load_logins logs why): a reload must never lock every device out. */
	memset(&plugin.seen, 0, sizeof(plugin.seen));
	load_logins();
	if(plugin.crl_file) load_crl(true);
	return MOSQ_ERR_SUCCESS;
}

static int parse_pairs(char *spec, struct reserved *pairs, int *count, const char *option)
{
	char *save = NULL;
	for(char *item = strtok_r(spec, ",", &save); item; item = strtok_r(NULL, ",", &save)){
		char *eq = strchr(item, '=');
		if(!eq || eq == item || !eq[1] || *count == MAX_RESERVED){
			mosquitto_log_printf(MOSQ_LOG_ERR, "lantaarn: %s wants login=value,...", option);
			return MOSQ_ERR_INVAL;
		}
		*eq = '\0';
		pairs[*count].login = mosquitto_strdup(item);
		pairs[*count].prefix = mosquitto_strdup(eq + 1);
		(*count)++;
	}
	return MOSQ_ERR_SUCCESS;
}

int mosquitto_plugin_version(int supported_version_count, const int *supported_versions)
{
	for(int i = 0; i < supported_version_count; i++){
		if(supported_versions[i] == 5) return 5;
	}
	return -1;
}

int mosquitto_plugin_init(mosquitto_plugin_id_t *identifier, void **userdata,
		struct mosquitto_opt *options, int option_count)
{
	memset(&plugin, 0, sizeof(plugin));
	plugin.id = identifier;
	plugin.auth_failures = 20;
	plugin.auth_window_s = 60;
	plugin.publish_burst = 100;
	*userdata = NULL;
	for(int i = 0; i < option_count; i++){
		const char *key = options[i].key, *value = options[i].value;
		if(!strcmp(key, "password_file")){
			plugin.password_file = mosquitto_strdup(value);
		}else if(!strcmp(key, "topic_prefix")){
			plugin.topic_prefix = mosquitto_strdup(value);
		}else if(!strcmp(key, "reserved_client_ids") || !strcmp(key, "share_groups")){
			bool ids = !strcmp(key, "reserved_client_ids");
			char *copy = mosquitto_strdup(value);
			int rc = parse_pairs(copy, ids ? plugin.reserved : plugin.groups,
					ids ? &plugin.reserved_count : &plugin.group_count, key);
			mosquitto_free(copy);
			if(rc) return rc;
		}else if(!strcmp(key, "auth_failures")){
			plugin.auth_failures = atoi(value);
		}else if(!strcmp(key, "auth_window_s")){
			plugin.auth_window_s = atoi(value) > 0 ? atoi(value) : 60;
		}else if(!strcmp(key, "publish_rate")){
			plugin.publish_rate = atof(value);
		}else if(!strcmp(key, "publish_burst")){
			plugin.publish_burst = atof(value) >= 1 ? atof(value) : 1;
		}else if(!strcmp(key, "crl_file")){
			plugin.crl_file = mosquitto_strdup(value);
		}else{
			mosquitto_log_printf(MOSQ_LOG_ERR, "lantaarn: unknown option plugin_opt_%s", key);
			return MOSQ_ERR_INVAL;
		}
	}
	if(!plugin.password_file){
		mosquitto_log_printf(MOSQ_LOG_ERR, "lantaarn: plugin_opt_password_file is required");
		return MOSQ_ERR_INVAL;
	}
	if(!plugin.topic_prefix) plugin.topic_prefix = mosquitto_strdup("lantaarn/v1/");
	plugin.addresses = mosquitto_calloc(ADDRESS_SLOTS, sizeof(struct slot));
	plugin.devices = mosquitto_calloc(DEVICE_SLOTS, sizeof(struct slot));
	if(!plugin.addresses || !plugin.devices || !plugin.topic_prefix) return MOSQ_ERR_NOMEM;
	int rc = load_logins();
	if(!rc && plugin.crl_file) rc = load_crl(false);
	if(rc) return rc;
	mosquitto_callback_register(identifier, MOSQ_EVT_BASIC_AUTH, on_basic_auth, NULL, NULL);
	mosquitto_callback_register(identifier, MOSQ_EVT_ACL_CHECK, on_acl_check, NULL, NULL);
	mosquitto_callback_register(identifier, MOSQ_EVT_RELOAD, on_reload, NULL, NULL);
	return MOSQ_ERR_SUCCESS;
}

int mosquitto_plugin_cleanup(void *userdata, struct mosquitto_opt *options, int option_count)
{
	(void)userdata;
	(void)options;
	(void)option_count;
	mosquitto_callback_unregister(plugin.id, MOSQ_EVT_BASIC_AUTH, on_basic_auth, NULL);
	mosquitto_callback_unregister(plugin.id, MOSQ_EVT_ACL_CHECK, on_acl_check, NULL);
	mosquitto_callback_unregister(plugin.id, MOSQ_EVT_RELOAD, on_reload, NULL);
	free_logins(plugin.logins, plugin.login_count);
	for(int i = 0; i < plugin.reserved_count; i++){
		mosquitto_free(plugin.reserved[i].login);
		mosquitto_free(plugin.reserved[i].prefix);
	}
	for(int i = 0; i < plugin.group_count; i++){
		mosquitto_free(plugin.groups[i].login);
		mosquitto_free(plugin.groups[i].prefix);
	}
	free_revoked(plugin.revoked, plugin.revoked_count);
	mosquitto_free(plugin.crl_file);
	mosquitto_free(plugin.password_file);
	mosquitto_free(plugin.topic_prefix);
	mosquitto_free(plugin.addresses);
	mosquitto_free(plugin.devices);
	memset(&plugin, 0, sizeof(plugin));
	return MOSQ_ERR_SUCCESS;
}
