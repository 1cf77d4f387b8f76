-- A batch is written by one statement without holding row locks between reading and writing.
-- When another writer changed one of its outplans in between, the statement stops itself with
-- this error (SQLSTATE 40001, like a serialization failure) and the batch is read and applied
-- again. Nothing of the statement is kept.
CREATE FUNCTION outplan_write_conflict(detail text) RETURNS integer
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'concurrent change: %', detail USING ERRCODE = '40001';
END
$$;
