package externaltest

import (
	"database/sql"
	"testing"
)

func TestStartPostgres(t *testing.T) {
	pg := StartPostgres(t)
	dsn := pg.CreateDB(t, "probe")
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var v string
	if err := db.QueryRow(`SELECT version()`).Scan(&v); err != nil {
		t.Fatal(err)
	}
	t.Log(v)
}
