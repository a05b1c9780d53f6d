/*
 * SQLite for the reference server (see db.h). Connections are opened in multi-thread mode
 * (SQLITE_OPEN_NOMUTEX): each belongs to one thread, so SQLite need not lock it. They are
 * kept on a list, under conns_mu, only so that db_close_all can close them at exit. WAL lets
 * readers on every thread run while one writer commits; a busy timeout makes concurrent
 * writers wait their turn instead of failing.
 */
#include "db.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <sqlite3.h>

/* ------------------------------------------------------------------ sbuf */

void sbuf_printf(sbuf *b, const char *fmt, ...)
{
    if (b->oom)
        return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        size_t room = b->cap - b->len;
        int n = vsnprintf(b->p ? b->p + b->len : NULL, room, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->oom = 1;
            return;
        }
        if ((size_t)n < room) {
            b->len += (size_t)n;
            return;
        }
        size_t cap = b->cap ? b->cap : 256;
        while (cap - b->len <= (size_t)n)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
}

void sbuf_json_str(sbuf *b, const char *s)
{
    sbuf_printf(b, "\"");
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            sbuf_printf(b, "\\%c", ch);
        else if (ch < 0x20)
            sbuf_printf(b, "\\u%04x", ch);
        else
            sbuf_printf(b, "%c", ch);
    }
    sbuf_printf(b, "\"");
}

void sbuf_free(sbuf *b)
{
    free(b->p);
    memset(b, 0, sizeof *b);
}

/* ------------------------------------------------------------------ connections */

enum {
    Q_GPA,
    Q_GRADES,
    Q_NOTIFS,
    Q_UNREAD,
    Q_USER,
    Q_PRODUCT,
    Q_CHEAPEST,
    Q_STUDENT_EXISTS,
    Q_SET_GRADE,
    Q_MARK_READ,
    Q_ADD_NOTIF,
    Q_REPRICE,
    Q_COUNT
};

static const char *const sql[Q_COUNT] = {
    [Q_GPA] = "SELECT s.name, AVG(g.grade), COUNT(g.grade) FROM students s "
              "LEFT JOIN grades g ON g.student_id = s.id WHERE s.id = ?1",
    [Q_GRADES] = "SELECT course, grade FROM grades WHERE student_id = ?1 ORDER BY course",
    [Q_NOTIFS] = "SELECT id, body, read FROM notifications WHERE user_id = ?1 "
                 "AND (?2 = 0 OR read = 0) ORDER BY id DESC LIMIT ?3 OFFSET ?4",
    [Q_UNREAD] = "SELECT (SELECT name FROM users WHERE id = ?1), "
                 "(SELECT COUNT(*) FROM notifications WHERE user_id = ?1 AND read = 0)",
    [Q_USER] = "SELECT name FROM users WHERE id = ?1",
    [Q_PRODUCT] = "SELECT name, price FROM products WHERE id = ?1",
    [Q_CHEAPEST] = "SELECT id, name, price FROM products ORDER BY price, id LIMIT 5",
    [Q_STUDENT_EXISTS] = "SELECT 1 FROM students WHERE id = ?1",
    [Q_SET_GRADE] = "INSERT INTO grades (student_id, course, grade) VALUES (?1, ?2, ?3) "
                    "ON CONFLICT (student_id, course) DO UPDATE SET grade = excluded.grade",
    [Q_MARK_READ] = "UPDATE notifications SET read = 1 WHERE id = ?2 AND user_id = ?1 "
                    "AND read = 0",
    [Q_ADD_NOTIF] = "INSERT INTO notifications (user_id, body, read) VALUES (?1, ?2, 0)",
    [Q_REPRICE] = "UPDATE products SET price = MAX(1, price * (100 + ?1) / 100)",
};

struct db {
    sqlite3 *h;
    sqlite3_stmt *st[Q_COUNT];
    struct db *next;
};

static char *db_path;
static pthread_mutex_t conns_mu = PTHREAD_MUTEX_INITIALIZER;
static db *conns; /* under conns_mu */
static _Thread_local db *t_db;
static atomic_uint_fast64_t queries;

uint64_t db_queries(void)
{
    return atomic_load(&queries);
}

static int open_conn(const char *path, sqlite3 **h)
{
    int rc = sqlite3_open_v2(path, h,
                             SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                             NULL);
    if (rc != SQLITE_OK) {
        fprintf(stderr, "tc-server: sqlite3_open %s: %s\n", path,
                *h ? sqlite3_errmsg(*h) : sqlite3_errstr(rc));
        sqlite3_close(*h);
        *h = NULL;
        return -1;
    }
    sqlite3_busy_timeout(*h, 5000);
    return 0;
}

db *db_thread(void)
{
    if (t_db)
        return t_db;
    db *d = calloc(1, sizeof *d);
    if (!d || open_conn(db_path, &d->h) != 0) {
        free(d);
        return NULL;
    }
    sqlite3_exec(d->h, "PRAGMA synchronous = NORMAL", NULL, NULL, NULL);
    for (int i = 0; i < Q_COUNT; i++) {
        if (sqlite3_prepare_v3(d->h, sql[i], -1, SQLITE_PREPARE_PERSISTENT, &d->st[i], NULL) !=
            SQLITE_OK) {
            fprintf(stderr, "tc-server: preparing \"%s\": %s\n", sql[i], sqlite3_errmsg(d->h));
            for (int j = 0; j < i; j++)
                sqlite3_finalize(d->st[j]);
            sqlite3_close(d->h);
            free(d);
            return NULL;
        }
    }
    pthread_mutex_lock(&conns_mu);
    d->next = conns;
    conns = d;
    pthread_mutex_unlock(&conns_mu);
    t_db = d;
    return d;
}

void db_close_all(void)
{
    pthread_mutex_lock(&conns_mu);
    while (conns) {
        db *d = conns;
        conns = d->next;
        for (int i = 0; i < Q_COUNT; i++)
            sqlite3_finalize(d->st[i]);
        sqlite3_close(d->h);
        free(d);
    }
    pthread_mutex_unlock(&conns_mu);
    free(db_path);
    db_path = NULL;
}

/* The statement q of d, reset, with its first two parameters bound (the others by the
 * caller); counts one query. */
static sqlite3_stmt *stmt(db *d, int q, long a, long b)
{
    sqlite3_stmt *s = d->st[q];
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    if (sqlite3_bind_parameter_count(s) >= 1)
        sqlite3_bind_int64(s, 1, a);
    if (sqlite3_bind_parameter_count(s) >= 2)
        sqlite3_bind_int64(s, 2, b);
    atomic_fetch_add(&queries, 1);
    return s;
}

static int sql_error(db *d, const char *what)
{
    fprintf(stderr, "tc-server: %s: %s\n", what, sqlite3_errmsg(d->h));
    return -1;
}

/* ------------------------------------------------------------------ seeding */

static const char schema[] =
    "CREATE TABLE students (id INTEGER PRIMARY KEY, name TEXT NOT NULL);"
    "CREATE TABLE grades (student_id INTEGER NOT NULL, course INTEGER NOT NULL,"
    "  grade INTEGER NOT NULL, PRIMARY KEY (student_id, course)) WITHOUT ROWID;"
    "CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL);"
    "CREATE TABLE notifications (id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL,"
    "  body TEXT NOT NULL, read INTEGER NOT NULL);"
    "CREATE TABLE products (id INTEGER PRIMARY KEY, name TEXT NOT NULL,"
    "  price INTEGER NOT NULL);";

/* Created after the rows are in: one sort instead of an index grown row by row. */
static const char indexes[] = "CREATE INDEX notifications_user ON notifications (user_id, id);"
                              "CREATE INDEX products_price ON products (price, id);";

static uint64_t rnd_state = 0x9e3779b97f4a7c15u;

static uint32_t rnd(void)
{
    rnd_state ^= rnd_state << 13;
    rnd_state ^= rnd_state >> 7;
    rnd_state ^= rnd_state << 17;
    return (uint32_t)(rnd_state >> 16);
}

static int seed(sqlite3 *h, long rows)
{
    /* Students and users get a tenth of the rows between them; grades and notifications,
       ten to a student or user, the rest. */
    long people = rows / 22 > 1 ? rows / 22 : 1;
    long products = rows / 40 > 100 ? rows / 40 : 100;
    sqlite3_stmt *st[5] = {NULL};
    const char *ins[5] = {"INSERT INTO students VALUES (?1, ?2)",
                          "INSERT INTO grades VALUES (?1, ?2, ?3)",
                          "INSERT INTO users VALUES (?1, ?2)",
                          "INSERT INTO notifications VALUES (?1, ?2, ?3, ?4)",
                          "INSERT INTO products VALUES (?1, ?2, ?3)"};
    int ok = 1;
    for (int i = 0; i < 5 && ok; i++)
        ok = sqlite3_prepare_v2(h, ins[i], -1, &st[i], NULL) == SQLITE_OK;
    char text[96];
    for (long id = 1; ok && id <= people; id++) {
        snprintf(text, sizeof text, "student-%ld", id);
        sqlite3_bind_int64(st[0], 1, id);
        sqlite3_bind_text(st[0], 2, text, -1, SQLITE_TRANSIENT);
        ok = sqlite3_step(st[0]) == SQLITE_DONE && sqlite3_reset(st[0]) == SQLITE_OK;
        for (int course = 1; ok && course <= DB_GRADES_PER_STUDENT; course++) {
            sqlite3_bind_int64(st[1], 1, id);
            sqlite3_bind_int(st[1], 2, course);
            sqlite3_bind_int(st[1], 3, 10 + (int)(rnd() % 31)); /* 1.0 to 4.0 */
            ok = sqlite3_step(st[1]) == SQLITE_DONE && sqlite3_reset(st[1]) == SQLITE_OK;
        }
        snprintf(text, sizeof text, "user-%ld", id);
        sqlite3_bind_int64(st[2], 1, id);
        sqlite3_bind_text(st[2], 2, text, -1, SQLITE_TRANSIENT);
        ok = ok && sqlite3_step(st[2]) == SQLITE_DONE && sqlite3_reset(st[2]) == SQLITE_OK;
        for (int k = 1; ok && k <= DB_NOTIFS_PER_USER; k++) {
            long nid = (id - 1) * DB_NOTIFS_PER_USER + k;
            snprintf(text, sizeof text, "Notification %ld: your grade in course %d is in", nid, k);
            sqlite3_bind_int64(st[3], 1, nid);
            sqlite3_bind_int64(st[3], 2, id);
            sqlite3_bind_text(st[3], 3, text, -1, SQLITE_TRANSIENT);
            sqlite3_bind_int(st[3], 4, rnd() % 2 == 0);
            ok = sqlite3_step(st[3]) == SQLITE_DONE && sqlite3_reset(st[3]) == SQLITE_OK;
        }
    }
    for (long id = 1; ok && id <= products; id++) {
        snprintf(text, sizeof text, "product-%ld", id);
        sqlite3_bind_int64(st[4], 1, id);
        sqlite3_bind_text(st[4], 2, text, -1, SQLITE_TRANSIENT);
        sqlite3_bind_int(st[4], 3, 100 + (int)(rnd() % 100000)); /* cents */
        ok = sqlite3_step(st[4]) == SQLITE_DONE && sqlite3_reset(st[4]) == SQLITE_OK;
    }
    if (!ok)
        fprintf(stderr, "tc-server: seeding: %s\n", sqlite3_errmsg(h));
    for (int i = 0; i < 5; i++)
        sqlite3_finalize(st[i]);
    return ok ? 0 : -1;
}

static long count_rows(sqlite3 *h, const char *table)
{
    char q[64];
    snprintf(q, sizeof q, "SELECT COALESCE(MAX(id), 0) FROM %s", table);
    sqlite3_stmt *s;
    long n = -1;
    if (sqlite3_prepare_v2(h, q, -1, &s, NULL) == SQLITE_OK && sqlite3_step(s) == SQLITE_ROW)
        n = (long)sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    return n;
}

int db_setup(const char *path, long rows, db_shape *shape)
{
    sqlite3 *h;
    if (open_conn(path, &h) != 0)
        return -1;
    char *err = NULL;
    int rc = sqlite3_exec(h, "PRAGMA journal_mode = WAL; BEGIN IMMEDIATE", NULL, NULL, &err);
    if (rc == SQLITE_OK) {
        sqlite3_stmt *s;
        int empty = 1;
        rc = sqlite3_prepare_v2(h, "SELECT 1 FROM sqlite_master WHERE name = 'students'", -1, &s,
                                NULL);
        if (rc == SQLITE_OK)
            empty = sqlite3_step(s) != SQLITE_ROW;
        sqlite3_finalize(s);
        if (rc == SQLITE_OK && empty) {
            fprintf(stderr, "tc-server: seeding %s with about %ld rows\n", path, rows);
            rc = sqlite3_exec(h, schema, NULL, NULL, &err);
            if (rc == SQLITE_OK && seed(h, rows) != 0)
                rc = SQLITE_ERROR;
            if (rc == SQLITE_OK)
                rc = sqlite3_exec(h, indexes, NULL, NULL, &err);
        }
    }
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(h, "COMMIT", NULL, NULL, &err);
    if (rc != SQLITE_OK) {
        fprintf(stderr, "tc-server: setting up %s: %s\n", path, err ? err : sqlite3_errmsg(h));
        sqlite3_free(err);
        sqlite3_close(h);
        return -1;
    }
    shape->students = count_rows(h, "students");
    shape->users = count_rows(h, "users");
    shape->products = count_rows(h, "products");
    sqlite3_close(h);
    db_path = strdup(path);
    return db_path ? 0 : -1;
}

/* ------------------------------------------------------------------ reads */

/* Resets every statement of d that is still running, so that the connection holds no read
 * transaction (and so no old snapshot) between requests; returns rc. */
static int done(db *d, int rc)
{
    for (int i = 0; i < Q_COUNT; i++)
        if (sqlite3_stmt_busy(d->st[i]))
            sqlite3_reset(d->st[i]);
    return rc;
}

static void grade_str(char *buf, size_t cap, double tenths)
{
    snprintf(buf, cap, "%.2f", tenths / 10.0);
}

int db_student_gpa(db *d, long student, sbuf *out)
{
    sqlite3_stmt *s = stmt(d, Q_GPA, student, 0);
    if (sqlite3_step(s) != SQLITE_ROW)
        return done(d, sql_error(d, "gpa"));
    if (sqlite3_column_type(s, 0) == SQLITE_NULL)
        return done(d, 1);
    char gpa[32];
    grade_str(gpa, sizeof gpa, sqlite3_column_double(s, 1));
    sbuf_printf(out, "{\"student\":%ld,\"name\":", student);
    sbuf_json_str(out, (const char *)sqlite3_column_text(s, 0));
    sbuf_printf(out, ",\"gpa\":\"%s\",\"grades\":%d}", gpa, sqlite3_column_int(s, 2));
    return done(d, 0);
}

int db_student_graph(db *d, long student, sbuf *out)
{
    sqlite3_stmt *s = stmt(d, Q_GPA, student, 0);
    if (sqlite3_step(s) != SQLITE_ROW)
        return done(d, sql_error(d, "gpa"));
    if (sqlite3_column_type(s, 0) == SQLITE_NULL)
        return done(d, 1);
    char num[32];
    grade_str(num, sizeof num, sqlite3_column_double(s, 1));
    sbuf_printf(out, "{\"data\":{\"student\":{\"id\":%ld,\"name\":", student);
    sbuf_json_str(out, (const char *)sqlite3_column_text(s, 0));
    sbuf_printf(out, ",\"gpa\":\"%s\",\"grades\":[", num);
    s = stmt(d, Q_GRADES, student, 0);
    int rc, n = 0;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        grade_str(num, sizeof num, sqlite3_column_double(s, 1));
        sbuf_printf(out, "%s{\"course\":%d,\"grade\":\"%s\"}", n++ ? "," : "",
                    sqlite3_column_int(s, 0), num);
    }
    if (rc != SQLITE_DONE)
        return done(d, sql_error(d, "grades"));
    sbuf_printf(out, "]}}}");
    return done(d, 0);
}

/* Appends the user's notifications as a JSON array: newest first, limit from offset. */
static int notif_array(db *d, long user, int unread_only, int limit, int offset, sbuf *out)
{
    sqlite3_stmt *s = stmt(d, Q_NOTIFS, user, unread_only);
    sqlite3_bind_int(s, 3, limit);
    sqlite3_bind_int(s, 4, offset);
    sbuf_printf(out, "[");
    int rc, n = 0;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        sbuf_printf(out, "%s{\"id\":%lld,\"body\":", n++ ? "," : "",
                    (long long)sqlite3_column_int64(s, 0));
        sbuf_json_str(out, (const char *)sqlite3_column_text(s, 1));
        sbuf_printf(out, ",\"read\":%s}", sqlite3_column_int(s, 2) ? "true" : "false");
    }
    if (rc != SQLITE_DONE)
        return done(d, sql_error(d, "notifications"));
    sbuf_printf(out, "]");
    return done(d, 0);
}

/* The user's name (copied into name) and unread count. 1 if there is no such user. */
static int user_unread(db *d, long user, char *name, size_t cap, int64_t *count)
{
    sqlite3_stmt *s = stmt(d, Q_UNREAD, user, 0);
    if (sqlite3_step(s) != SQLITE_ROW)
        return done(d, sql_error(d, "unread"));
    if (sqlite3_column_type(s, 0) == SQLITE_NULL)
        return done(d, 1);
    snprintf(name, cap, "%s", (const char *)sqlite3_column_text(s, 0));
    *count = sqlite3_column_int64(s, 1);
    return done(d, 0);
}

int db_notifications(db *d, long user, int page, int unread_only, sbuf *out)
{
    sqlite3_stmt *s = stmt(d, Q_USER, user, 0);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_DONE)
        return done(d, 1);
    if (rc != SQLITE_ROW)
        return done(d, sql_error(d, "user"));
    sbuf_printf(out, "{\"user\":%ld,\"page\":%d,\"filter\":\"%s\",\"items\":", user, page,
                unread_only ? "unread" : "all");
    if (notif_array(d, user, unread_only, 10, (page - 1) * 10, out) != 0)
        return done(d, -1);
    sbuf_printf(out, "}");
    return done(d, 0);
}

int db_unread_count(db *d, long user, int64_t *count)
{
    char name[64];
    return user_unread(d, user, name, sizeof name, count);
}

int db_inbox(db *d, long user, sbuf *out)
{
    char name[64];
    int64_t unread;
    int rc = user_unread(d, user, name, sizeof name, &unread);
    if (rc != 0)
        return done(d, rc);
    sbuf_printf(out, "{\"unread\":%lld,\"latest\":", (long long)unread);
    if (notif_array(d, user, 0, 3, 0, out) != 0)
        return done(d, -1);
    sbuf_printf(out, "}");
    return done(d, 0);
}

int db_user_graph(db *d, long user, sbuf *out)
{
    char name[64];
    int64_t unread;
    int rc = user_unread(d, user, name, sizeof name, &unread);
    if (rc != 0)
        return done(d, rc);
    sbuf_printf(out, "{\"data\":{\"user\":{\"id\":%ld,\"name\":", user);
    sbuf_json_str(out, name);
    sbuf_printf(out, ",\"unread\":%lld,\"notifications\":", (long long)unread);
    if (notif_array(d, user, 0, 5, 0, out) != 0)
        return done(d, -1);
    sbuf_printf(out, "}}}");
    return done(d, 0);
}

int db_product(db *d, long product, sbuf *out)
{
    sqlite3_stmt *s = stmt(d, Q_PRODUCT, product, 0);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_DONE)
        return done(d, 1);
    if (rc != SQLITE_ROW)
        return done(d, sql_error(d, "product"));
    sbuf_printf(out, "{\"id\":%ld,\"name\":", product);
    sbuf_json_str(out, (const char *)sqlite3_column_text(s, 0));
    sbuf_printf(out, ",\"price\":%lld}", (long long)sqlite3_column_int64(s, 1));
    return done(d, 0);
}

int db_cheapest(db *d, sbuf *out)
{
    sqlite3_stmt *s = stmt(d, Q_CHEAPEST, 0, 0);
    sbuf_printf(out, "[");
    int rc, n = 0;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        sbuf_printf(out, "%s{\"id\":%lld,\"name\":", n++ ? "," : "",
                    (long long)sqlite3_column_int64(s, 0));
        sbuf_json_str(out, (const char *)sqlite3_column_text(s, 1));
        sbuf_printf(out, ",\"price\":%lld}", (long long)sqlite3_column_int64(s, 2));
    }
    if (rc != SQLITE_DONE)
        return done(d, sql_error(d, "cheapest"));
    sbuf_printf(out, "]");
    return done(d, 0);
}

/* ------------------------------------------------------------------ writes */

int db_set_grade(db *d, long student, int course, int grade_tenths)
{
    sqlite3_stmt *s = stmt(d, Q_STUDENT_EXISTS, student, 0);
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    if (rc == SQLITE_DONE)
        return 1;
    if (rc != SQLITE_ROW)
        return sql_error(d, "student");
    s = stmt(d, Q_SET_GRADE, student, course);
    sqlite3_bind_int(s, 3, grade_tenths);
    rc = sqlite3_step(s);
    sqlite3_reset(s); /* ends the write transaction now, not at the next use */
    return rc == SQLITE_DONE ? 0 : sql_error(d, "set grade");
}

int db_mark_read(db *d, long user, long notification)
{
    sqlite3_stmt *s = stmt(d, Q_MARK_READ, user, notification);
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    if (rc != SQLITE_DONE)
        return sql_error(d, "mark read");
    return sqlite3_changes(d->h) == 1 ? 0 : 1;
}

int db_add_notification(db *d, long user, const char *body, long *id)
{
    sqlite3_stmt *s = stmt(d, Q_USER, user, 0);
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    if (rc == SQLITE_DONE)
        return 1;
    if (rc != SQLITE_ROW)
        return sql_error(d, "user");
    s = stmt(d, Q_ADD_NOTIF, user, 0);
    sqlite3_bind_text(s, 2, body, -1, SQLITE_TRANSIENT);
    rc = sqlite3_step(s);
    sqlite3_reset(s);
    if (rc != SQLITE_DONE)
        return sql_error(d, "add notification");
    *id = (long)sqlite3_last_insert_rowid(d->h);
    return 0;
}

int db_reprice(db *d, int percent)
{
    sqlite3_stmt *s = stmt(d, Q_REPRICE, percent, 0);
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    return rc == SQLITE_DONE ? 0 : sql_error(d, "reprice");
}
