-- One bucket's stage 2 file into features_table.
INSERT INTO features_table BY NAME
SELECT * FROM stage_rows($path);
