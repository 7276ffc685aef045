/*
 * webops gate: the personalization decision inside Varnish.
 *
 * One SQLite connection per worker thread and object (pthread key), each with its
 * own mutex, taken by its thread, by the VCL's cold event and by the sweep below:
 * nothing is shared between worker threads on a lookup. The file is opened
 * read-only and immutable (no SQLite locking at all): publishes replace it by
 * rename, so an open inode normally never changes.
 *
 * Normally. Someone may still write the live file in place (cp, rsync --inplace,
 * truncate, a copy cut short) or remove it. So the file is never mapped (SQLite
 * reads it with pread into each connection's page cache: a page cut off is a
 * short read, an error, where a mapping would be SIGBUS and the child's death),
 * and any error on a lookup answers "no profile", closes the connection and has
 * the file looked at again on the next lookup. The identity of the file
 * (dev, inode, size, mtime, ctime) changing means reopen.
 *
 * Replaced files are released even by idle threads: the first thread to open a
 * file other than the one last opened (db->current) closes every connection of
 * the object still on another one (db_sweep), whose threads reopen on their next
 * lookup. Lock order: all_mtx, then db->mtx, then one conn's mtx at a time; no
 * thread holds its own conn's mtx while it takes another.
 *
 * .errors(): the lookups answered "no profile" because of the file (missing,
 * unreadable, not a user_profiles file, damaged), each also logged as a VCL_Log
 * line "webops-gate: PATH: no profile: WHY".
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

/* what a stat says of the file: any change means another file, or the file written */
struct file_id {
	int			exists;
	dev_t			dev;
	ino_t			ino;
	off_t			size;
	struct timespec		mtime;
	struct timespec		ctime;
};

struct gate_conn {
	unsigned		magic;
#define GATE_CONN_MAGIC		0x6a7e0c01
	pthread_mutex_t		mtx;
	int			owned;		/* by a live worker thread */
	sqlite3			*db;
	sqlite3_stmt		*stmt;
	struct file_id		id;		/* the file as stat saw it when last looked at */
	vtim_mono		next_check;
	unsigned		steps;		/* progress handler calls in this lookup */
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
	pthread_mutex_t		mtx;		/* the list of connections, current */
	VTAILQ_HEAD(, gate_conn) conns;
	struct file_id		current;	/* the file last opened by any connection */
	uint64_t		errors;		/* atomic: lookups without an answer from the file */
	VTAILQ_ENTRY(vmod_gate_db) all;
};

/* every db object of every VCL, for the cold event; touched at load, discard and cold only */
static pthread_mutex_t all_mtx = PTHREAD_MUTEX_INITIALIZER;
static VTAILQ_HEAD(, vmod_gate_db) all_dbs = VTAILQ_HEAD_INITIALIZER(all_dbs);

/* a lookup visits a few pages: a million VM steps means a damaged file walked in circles */
#define PROGRESS_OPS	1000
#define PROGRESS_MAX	1000

static int
conn_progress(void *p)
{
	struct gate_conn *c = p;

	return (++c->steps > PROGRESS_MAX);
}

static int
file_id_get(const char *path, struct file_id *id)
{
	struct stat st;

	memset(id, 0, sizeof *id);
	if (stat(path, &st) != 0)
		return (-1);
	id->exists = 1;
	id->dev = st.st_dev;
	id->ino = st.st_ino;
	id->size = st.st_size;
	id->mtime = st.st_mtim;
	id->ctime = st.st_ctim;
	return (0);
}

static int
file_id_same(const struct file_id *a, const struct file_id *b)
{
	if (!a->exists || !b->exists)
		return (a->exists == b->exists);
	return (a->dev == b->dev && a->ino == b->ino && a->size == b->size &&
	    a->mtime.tv_sec == b->mtime.tv_sec && a->mtime.tv_nsec == b->mtime.tv_nsec &&
	    a->ctime.tv_sec == b->ctime.tv_sec && a->ctime.tv_nsec == b->ctime.tv_nsec);
}

static void
conn_close(struct gate_conn *c)
{
	if (c->stmt != NULL)
		(void)sqlite3_finalize(c->stmt);
	if (c->db != NULL)
		(void)sqlite3_close_v2(c->db);
	c->stmt = NULL;
	c->db = NULL;
}

/* closed, and looked at again (a stat, a reopen) on its next lookup */
static void
conn_drop(struct gate_conn *c)
{
	conn_close(c);
	c->next_check = 0;
}

/* a worker thread ends: its connection is closed, the slot left for another thread */
static void
conn_release(void *p)
{
	struct gate_conn *c;

	CAST_OBJ_NOTNULL(c, p, GATE_CONN_MAGIC);
	AZ(pthread_mutex_lock(&c->mtx));
	conn_drop(c);
	c->owned = 0;
	AZ(pthread_mutex_unlock(&c->mtx));
}

static void
conn_error(struct gate_conn *c, const char *what, const char *why)
{
	(void)snprintf(c->error, sizeof c->error, "%s: %s", what, why);
}

#define REFRESH_OPENED	1	/* (re)opened, or tried to */
#define REFRESH_OTHER	2	/* another file than this connection last saw: sweep */

/*
 * Look at the file (a stat) and (re)open it when it is not the one this connection has
 * open, or when the connection is closed. Sets the next check. REFRESH_OTHER when the
 * file is another than the one this connection last saw (a publish, a removal, a write
 * in place), *id what it is: the caller then has the connections on older ones closed.
 */
static int
conn_refresh(struct vmod_gate_db *db, struct gate_conn *c, vtim_mono now, struct file_id *id)
{
	struct file_id after;
	int changed, rc;

	c->next_check = now + db->interval;
	if (file_id_get(db->path, id) != 0) {
		conn_error(c, "cannot stat", strerror(errno));
		changed = c->id.exists ? REFRESH_OTHER : 0;
		conn_close(c);
		c->id = *id;
		return (changed);
	}
	changed = file_id_same(id, &c->id) ? 0 : REFRESH_OTHER;
	if (c->stmt != NULL && !changed)
		return (0);
	changed |= REFRESH_OPENED;
	conn_close(c);
	c->id = *id;
	rc = sqlite3_open_v2(db->uri, &c->db,
	    SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_URI, NULL);
	if (rc != SQLITE_OK) {
		conn_error(c, "cannot open", c->db ? sqlite3_errmsg(c->db) : sqlite3_errstr(rc));
		goto fail;
	}
	/* never mapped: a mapped page cut off by a write in place is SIGBUS, a read one an error */
	(void)sqlite3_exec(c->db, "PRAGMA mmap_size = 0", NULL, NULL, NULL);
	/* a damaged page is refused when read, not followed */
	(void)sqlite3_exec(c->db, "PRAGMA cell_size_check = ON", NULL, NULL, NULL);
	rc = sqlite3_prepare_v3(c->db, QUERY, -1, SQLITE_PREPARE_PERSISTENT, &c->stmt, NULL);
	if (rc != SQLITE_OK) {
		conn_error(c, "not a user_profiles file", sqlite3_errmsg(c->db));
		goto fail;
	}
	/* one read transaction for the connection's life: no per-lookup transaction start (which
	 * checks the file's size and schema each time); the file is not expected to change under
	 * it, and when it does, the lookup errors or the stat sees it */
	if (sqlite3_exec(c->db, "BEGIN", NULL, NULL, NULL) != SQLITE_OK) {
		conn_error(c, "cannot begin", sqlite3_errmsg(c->db));
		goto fail;
	}
	sqlite3_progress_handler(c->db, PROGRESS_OPS, conn_progress, c);
	c->error[0] = '\0';
	/* replaced or written while being opened: which one is open is not known, look again
	 * on the next lookup, and leave the sweep to that one */
	if (file_id_get(db->path, &after) != 0 || !file_id_same(&after, id)) {
		c->next_check = 0;
		return (REFRESH_OPENED);
	}
	return (changed);

  fail:
	conn_close(c);
	return (changed);
}

/*
 * The file is *id now: close every other connection of db on another file (a replaced or
 * removed version, or the file as it was before a write in place). Their threads reopen on
 * their next lookup. Once per file: the first connection that opens it does it.
 */
static void
db_sweep(struct vmod_gate_db *db, const struct gate_conn *self, const struct file_id *id)
{
	struct gate_conn *c;

	AZ(pthread_mutex_lock(&db->mtx));
	if (!file_id_same(&db->current, id)) {
		db->current = *id;
		VTAILQ_FOREACH(c, &db->conns, list) {
			if (c == self)
				continue;
			AZ(pthread_mutex_lock(&c->mtx));
			if (c->db != NULL && !file_id_same(&c->id, id))
				conn_drop(c);
			AZ(pthread_mutex_unlock(&c->mtx));
		}
	}
	AZ(pthread_mutex_unlock(&db->mtx));
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

/* no answer from the file: logged and counted (.errors()) */
static void
file_error(VRT_CTX, struct vmod_gate_db *db, const char *why)
{
	(void)__atomic_add_fetch(&db->errors, 1, __ATOMIC_RELAXED);
	gate_log(ctx, db, NULL, why);
}

VCL_BOOL
vmod_db_has_profile(VRT_CTX, struct vmod_gate_db *db, VCL_STRING user_id)
{
	struct gate_conn *c;
	struct file_id id;
	vtim_mono now;
	size_t len;
	int rc, refresh = 0;
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
	if (now >= c->next_check)
		refresh = conn_refresh(db, c, now, &id);
	if (c->stmt == NULL) {
		file_error(ctx, db, c->error);
	} else {
		c->steps = 0;
		rc = sqlite3_bind_text(c->stmt, 1, user_id, (int)len, SQLITE_STATIC);
		if (rc == SQLITE_OK)
			rc = sqlite3_step(c->stmt);
		if (rc == SQLITE_ROW) {
			found = sqlite3_column_int(c->stmt, 0) != 0;
		} else if (rc != SQLITE_DONE) {
			/* the file written or damaged in place (a page cut off, garbage): no answer,
			 * and the file looked at again on the next lookup, or in check_interval when
			 * it was opened just now */
			conn_error(c, "cannot read", sqlite3_errmsg(c->db));
			file_error(ctx, db, c->error);
			if (refresh & REFRESH_OPENED)
				conn_close(c);
			else
				conn_drop(c);
		}
	}
	if (c->stmt != NULL) {
		(void)sqlite3_reset(c->stmt);
		(void)sqlite3_clear_bindings(c->stmt);
	}
	AZ(pthread_mutex_unlock(&c->mtx));
	/* never with our own mutex held: the sweep takes the others' */
	if (refresh & REFRESH_OTHER)
		db_sweep(db, c, &id);
	return (found);
}

VCL_INT
vmod_db_errors(VRT_CTX, struct vmod_gate_db *db)
{
	CHECK_OBJ_NOTNULL(ctx, VRT_CTX_MAGIC);
	CHECK_OBJ_NOTNULL(db, GATE_DB_MAGIC);
	return ((VCL_INT)__atomic_load_n(&db->errors, __ATOMIC_RELAXED));
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
			conn_drop(c);
			AZ(pthread_mutex_unlock(&c->mtx));
		}
		AZ(pthread_mutex_unlock(&db->mtx));
	}
	AZ(pthread_mutex_unlock(&all_mtx));
	return (0);
}
