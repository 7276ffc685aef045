/*
 * webops gate: the personalization decision inside Varnish.
 *
 * One SQLite connection per worker thread and object (pthread key), each with its
 * own uncontended mutex, taken only by its thread and by the VCL's cold event:
 * nothing is shared between worker threads on the request path. The file is
 * opened read-only and immutable (no SQLite locking at all): publishes replace it
 * by rename, never write it in place, so an open inode never changes.
 */

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <sqlite3.h>

#include "cache/cache.h"
#include "vsb.h"
#include "vsha256.h"
#include "vtim.h"

#include "vcc_gate_if.h"

#define QUERY "SELECT has_profile FROM user_profiles WHERE user_id = ?1"

struct gate_conn {
	unsigned		magic;
#define GATE_CONN_MAGIC		0x6a7e0c01
	pthread_mutex_t		mtx;
	int			owned;		/* by a live worker thread */
	sqlite3			*db;
	sqlite3_stmt		*stmt;
	dev_t			dev;
	ino_t			ino;
	off_t			size;
	struct timespec		mtime;
	vtim_mono		next_check;
	char			error[256];	/* why there is no statement */
	VTAILQ_ENTRY(gate_conn)	list;
};

struct vmod_gate_db {
	unsigned		magic;
#define GATE_DB_MAGIC		0x6a7e0c02
	char			*path;
	char			*uri;
	vtim_dur		interval;
	VCL_INT			max_id;
	VCL_VCL			vcl;
	pthread_key_t		key;
	pthread_mutex_t		mtx;		/* the list of connections */
	VTAILQ_HEAD(, gate_conn) conns;
	VTAILQ_ENTRY(vmod_gate_db) all;
};

/* every db object of every VCL, for the cold event; touched at load, discard and cold only */
static pthread_mutex_t all_mtx = PTHREAD_MUTEX_INITIALIZER;
static VTAILQ_HEAD(, vmod_gate_db) all_dbs = VTAILQ_HEAD_INITIALIZER(all_dbs);

static void
conn_close(struct gate_conn *c)
{
	if (c->stmt != NULL)
		(void)sqlite3_finalize(c->stmt);
	if (c->db != NULL)
		(void)sqlite3_close_v2(c->db);
	c->stmt = NULL;
	c->db = NULL;
	c->next_check = 0;
}

/* a worker thread ends: its connection is closed, the slot left for another thread */
static void
conn_release(void *p)
{
	struct gate_conn *c;

	CAST_OBJ_NOTNULL(c, p, GATE_CONN_MAGIC);
	AZ(pthread_mutex_lock(&c->mtx));
	conn_close(c);
	c->owned = 0;
	AZ(pthread_mutex_unlock(&c->mtx));
}

static void
conn_error(struct gate_conn *c, const char *what, const char *why)
{
	(void)snprintf(c->error, sizeof c->error, "%s: %s", what, why);
}

/* (re)open when the file changed since it was opened (another inode after a rename publish) */
static void
conn_refresh(struct vmod_gate_db *db, struct gate_conn *c)
{
	struct stat st;
	int rc;

	if (stat(db->path, &st) != 0) {
		conn_close(c);
		conn_error(c, "cannot stat", strerror(errno));
		return;
	}
	if (c->stmt != NULL && st.st_dev == c->dev && st.st_ino == c->ino &&
	    st.st_size == c->size && st.st_mtim.tv_sec == c->mtime.tv_sec &&
	    st.st_mtim.tv_nsec == c->mtime.tv_nsec)
		return;
	conn_close(c);
	c->dev = st.st_dev;
	c->ino = st.st_ino;
	c->size = st.st_size;
	c->mtime = st.st_mtim;
	rc = sqlite3_open_v2(db->uri, &c->db,
	    SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_URI, NULL);
	if (rc != SQLITE_OK) {
		conn_error(c, "cannot open", c->db ? sqlite3_errmsg(c->db) : sqlite3_errstr(rc));
		conn_close(c);
		return;
	}
	/* pages read through the OS page cache, shared by every thread: no read() per page and no
	 * copy in each connection's cache (the file never changes under an open connection) */
	(void)sqlite3_exec(c->db, "PRAGMA mmap_size = 1073741824", NULL, NULL, NULL);
	rc = sqlite3_prepare_v3(c->db, QUERY, -1, SQLITE_PREPARE_PERSISTENT, &c->stmt, NULL);
	if (rc != SQLITE_OK) {
		conn_error(c, "not a user_profiles file", sqlite3_errmsg(c->db));
		conn_close(c);
		return;
	}
	/* one read transaction for the connection's life: no per-lookup transaction start (which
	 * checks the file's size and schema each time); the file never changes under it */
	if (sqlite3_exec(c->db, "BEGIN", NULL, NULL, NULL) != SQLITE_OK) {
		conn_error(c, "cannot begin", sqlite3_errmsg(c->db));
		conn_close(c);
		return;
	}
	c->error[0] = '\0';
}

static struct gate_conn *
conn_get(struct vmod_gate_db *db)
{
	struct gate_conn *c;

	c = pthread_getspecific(db->key);
	if (c != NULL)
		return (c);
	AZ(pthread_mutex_lock(&db->mtx));
	VTAILQ_FOREACH(c, &db->conns, list)
		if (!c->owned)
			break;
	if (c == NULL) {
		ALLOC_OBJ(c, GATE_CONN_MAGIC);
		if (c != NULL) {
			AZ(pthread_mutex_init(&c->mtx, NULL));
			VTAILQ_INSERT_TAIL(&db->conns, c, list);
		}
	}
	if (c != NULL)
		c->owned = 1;
	AZ(pthread_mutex_unlock(&db->mtx));
	if (c != NULL && pthread_setspecific(db->key, c) != 0) {
		c->owned = 0;
		return (NULL);
	}
	return (c);
}

/* the path as an SQLite URI with immutable=1: %, ? and # escaped */
static char *
make_uri(const char *path)
{
	struct vsb *vsb;
	const char *p;
	char *s;

	vsb = VSB_new_auto();
	AN(vsb);
	VSB_cat(vsb, "file:");
	for (p = path; *p != '\0'; p++) {
		if (*p == '%' || *p == '?' || *p == '#')
			VSB_printf(vsb, "%%%02X", (unsigned char)*p);
		else
			VSB_putc(vsb, *p);
	}
	VSB_cat(vsb, "?immutable=1");
	AZ(VSB_finish(vsb));
	s = strdup(VSB_data(vsb));
	VSB_destroy(&vsb);
	return (s);
}

VCL_VOID
vmod_db__init(VRT_CTX, struct vmod_gate_db **dbp, const char *vcl_name,
    VCL_STRING path, VCL_DURATION interval, VCL_INT max_id)
{
	struct vmod_gate_db *db;

	CHECK_OBJ_NOTNULL(ctx, VRT_CTX_MAGIC);
	AN(dbp);
	AZ(*dbp);
	if (path == NULL || *path != '/') {
		VRT_fail(ctx, "gate.db(%s): the path must be absolute", vcl_name);
		return;
	}
	if (interval <= 0 || max_id < 1) {
		VRT_fail(ctx, "gate.db(%s): check_interval and max_id_length must be positive",
		    vcl_name);
		return;
	}
	ALLOC_OBJ(db, GATE_DB_MAGIC);
	AN(db);
	db->path = strdup(path);
	db->uri = make_uri(path);
	AN(db->path);
	AN(db->uri);
	db->interval = interval;
	db->max_id = max_id;
	db->vcl = ctx->vcl;
	VTAILQ_INIT(&db->conns);
	AZ(pthread_mutex_init(&db->mtx, NULL));
	AZ(pthread_key_create(&db->key, conn_release));
	AZ(pthread_mutex_lock(&all_mtx));
	VTAILQ_INSERT_TAIL(&all_dbs, db, all);
	AZ(pthread_mutex_unlock(&all_mtx));
	*dbp = db;
}

VCL_VOID
vmod_db__fini(struct vmod_gate_db **dbp)
{
	struct vmod_gate_db *db;
	struct gate_conn *c, *c2;

	TAKE_OBJ_NOTNULL(db, dbp, GATE_DB_MAGIC);
	AZ(pthread_mutex_lock(&all_mtx));
	VTAILQ_REMOVE(&all_dbs, db, all);
	AZ(pthread_mutex_unlock(&all_mtx));
	/* a discarded VCL runs no request: no thread uses these any more */
	AZ(pthread_key_delete(db->key));
	VTAILQ_FOREACH_SAFE(c, &db->conns, list, c2) {
		VTAILQ_REMOVE(&db->conns, c, list);
		conn_close(c);
		AZ(pthread_mutex_destroy(&c->mtx));
		FREE_OBJ(c);
	}
	AZ(pthread_mutex_destroy(&db->mtx));
	free(db->path);
	free(db->uri);
	FREE_OBJ(db);
}

static void
gate_log(VRT_CTX, const struct vmod_gate_db *db, const char *fmt, const char *what)
{
	if (ctx->vsl != NULL)
		VSLb(ctx->vsl, SLT_VCL_Log, "webops-gate: %s: no profile: %s", db->path,
		    what == NULL ? fmt : what);
}

VCL_BOOL
vmod_db_has_profile(VRT_CTX, struct vmod_gate_db *db, VCL_STRING user_id)
{
	struct gate_conn *c;
	vtim_mono now;
	size_t len;
	int rc;
	VCL_BOOL found = 0;

	CHECK_OBJ_NOTNULL(ctx, VRT_CTX_MAGIC);
	CHECK_OBJ_NOTNULL(db, GATE_DB_MAGIC);
	if (user_id == NULL || *user_id == '\0')
		return (0);
	len = strlen(user_id);
	if (len > (size_t)db->max_id) {
		gate_log(ctx, db, "id longer than max_id_length", NULL);
		return (0);
	}
	c = conn_get(db);
	if (c == NULL) {
		gate_log(ctx, db, "out of memory", NULL);
		return (0);
	}
	AZ(pthread_mutex_lock(&c->mtx));
	now = VTIM_mono();
	if (now >= c->next_check) {
		c->next_check = now + db->interval;
		conn_refresh(db, c);
	}
	if (c->stmt == NULL) {
		gate_log(ctx, db, NULL, c->error);
	} else if (sqlite3_bind_text(c->stmt, 1, user_id, (int)len, SQLITE_STATIC) != SQLITE_OK) {
		gate_log(ctx, db, NULL, sqlite3_errmsg(c->db));
	} else {
		rc = sqlite3_step(c->stmt);
		if (rc == SQLITE_ROW)
			found = sqlite3_column_int(c->stmt, 0) != 0;
		else if (rc != SQLITE_DONE) {
			/* a file damaged in place: say it, and look at it again next time */
			gate_log(ctx, db, NULL, sqlite3_errmsg(c->db));
			c->next_check = 0;
			c->size = -1;
		}
	}
	if (c->stmt != NULL) {
		(void)sqlite3_reset(c->stmt);
		(void)sqlite3_clear_bindings(c->stmt);
	}
	AZ(pthread_mutex_unlock(&c->mtx));
	return (found);
}

VCL_INT
vmod_bucket(VRT_CTX, VCL_STRING user_id, VCL_STRING salt)
{
	VSHA256_CTX sha;
	unsigned char digest[VSHA256_LEN];
	uint64_t v = 0;
	int i;

	CHECK_OBJ_NOTNULL(ctx, VRT_CTX_MAGIC);
	VSHA256_Init(&sha);
	if (salt != NULL)
		VSHA256_Update(&sha, salt, strlen(salt));
	VSHA256_Update(&sha, ":", 1);
	if (user_id != NULL)
		VSHA256_Update(&sha, user_id, strlen(user_id));
	VSHA256_Final(digest, &sha);
	for (i = 0; i < 8; i++)
		v = (v << 8) | digest[i];
	return ((VCL_INT)(v % 100));
}

int v_matchproto_(vmod_event_f)
vmod_event(VRT_CTX, struct vmod_priv *priv, enum vcl_event_e e)
{
	struct vmod_gate_db *db;
	struct gate_conn *c;

	CHECK_OBJ_NOTNULL(ctx, VRT_CTX_MAGIC);
	(void)priv;
	if (e == VCL_EVENT_LOAD) {
		/* one lookup does no allocation worth counting: no global mutex for it */
		(void)sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
		return (0);
	}
	if (e != VCL_EVENT_COLD)
		return (0);
	AZ(pthread_mutex_lock(&all_mtx));
	VTAILQ_FOREACH(db, &all_dbs, all) {
		if (db->vcl != ctx->vcl)
			continue;
		AZ(pthread_mutex_lock(&db->mtx));
		VTAILQ_FOREACH(c, &db->conns, list) {
			AZ(pthread_mutex_lock(&c->mtx));
			conn_close(c);
			AZ(pthread_mutex_unlock(&c->mtx));
		}
		AZ(pthread_mutex_unlock(&db->mtx));
	}
	AZ(pthread_mutex_unlock(&all_mtx));
	return (0);
}
