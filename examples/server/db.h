/*
 * The reference server's source of truth: a SQLite file database (WAL mode) of students and
 * their grades, users and their notifications, and a product catalogue, seeded at start.
 * One connection per server thread, opened on the thread's first request, with its
 * statements prepared once. Every function that reads or writes rows counts one "query" in
 * db_queries(), which /metrics reports, so the cache's effect on the database is visible.
 */
#ifndef TC_SERVER_DB_H
#define TC_SERVER_DB_H

#include <stddef.h>
#include <stdint.h>

/* A growable string. After an allocation failure it keeps what it had and sets oom. */
typedef struct sbuf {
    char *p;
    size_t len, cap;
    int oom;
} sbuf;

void sbuf_printf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Appends s as a JSON string literal, quotes included. */
void sbuf_json_str(sbuf *b, const char *s);
void sbuf_free(sbuf *b);

/* How many rows of each kind the database holds (ids run from 1 to the count). */
typedef struct db_shape {
    long students, users, products;
} db_shape;

/* Grades and notifications per student and per user; notification ids are laid out as
 * (user - 1) * DB_NOTIFS_PER_USER + 1 .. user * DB_NOTIFS_PER_USER when seeded. */
#define DB_GRADES_PER_STUDENT 10
#define DB_NOTIFS_PER_USER 10

/* Opens path (creating it), switches it to WAL and, if it has no tables yet, creates them
 * and seeds about rows rows from a fixed pseudo-random sequence, in one transaction that
 * concurrent starters serialise on. Fills *shape from what is there. 0, or -1 with a message
 * on stderr. Call once, before db_thread. */
int db_setup(const char *path, long rows, db_shape *shape);

/* The calling thread's connection (opened on first use), or NULL with a message on stderr.
 * Thread-safe: each thread gets its own. */
typedef struct db db;
db *db_thread(void);

/* Closes every connection db_thread opened. Only once no thread uses them any more. */
void db_close_all(void);

/* Queries counted so far, by every thread. */
uint64_t db_queries(void);

/* Reads: append a JSON document to out. 0: found; 1: no such row; -1: SQLite error. */
int db_student_gpa(db *d, long student, sbuf *out);
int db_student_graph(db *d, long student, sbuf *out); /* name, GPA and every grade */
int db_notifications(db *d, long user, int page, int unread_only, sbuf *out);
int db_unread_count(db *d, long user, int64_t *count);
int db_inbox(db *d, long user, sbuf *out);      /* unread count and the latest three */
int db_user_graph(db *d, long user, sbuf *out); /* name, unread count, latest five */
int db_product(db *d, long product, sbuf *out);
int db_cheapest(db *d, sbuf *out); /* the five cheapest products */

/* Writes. 0: done; 1: no such row (or, for db_mark_read, already read: nothing changed);
 * -1: SQLite error. */
int db_set_grade(db *d, long student, int course, int grade_tenths);
int db_mark_read(db *d, long user, long notification);
int db_add_notification(db *d, long user, const char *body, long *id);
int db_reprice(db *d, int percent); /* every product's price changes by percent */

#endif /* TC_SERVER_DB_H */
