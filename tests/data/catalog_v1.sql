-- A catalog written by the ModelConfig-column code (catalog schema 1), dumped with
-- sqlite3's iterdump; tests/test_catalog.py loads it and opens it with today's code.
BEGIN TRANSACTION;
CREATE TABLE catalog_meta (
	"key" VARCHAR NOT NULL, 
	value VARCHAR NOT NULL, 
	PRIMARY KEY ("key")
);
INSERT INTO "catalog_meta" VALUES('defaults_registered','2026-01-01T00:00:00+00:00');
CREATE TABLE models (
	id INTEGER NOT NULL, 
	name VARCHAR NOT NULL, 
	kind VARCHAR NOT NULL, 
	model VARCHAR NOT NULL, 
	api_base VARCHAR, 
	api_key_env VARCHAR, 
	temperature FLOAT NOT NULL, 
	max_tokens INTEGER NOT NULL, 
	n_ctx INTEGER NOT NULL, 
	threads INTEGER NOT NULL, 
	input_price_per_m FLOAT, 
	output_price_per_m FLOAT, 
	hardware_usd_per_hour FLOAT, 
	timeout_s FLOAT NOT NULL, 
	max_retries INTEGER NOT NULL, 
	tags JSON NOT NULL, 
	templates JSON NOT NULL, 
	few_shot JSON NOT NULL, 
	created DATETIME NOT NULL, 
	updated DATETIME NOT NULL, 
	PRIMARY KEY (id)
);
INSERT INTO "models" VALUES(1,'tiny-local','local-gguf','/tmp/gen/opt/models/tiny-q4.gguf',NULL,NULL,0.0,128,4096,2,NULL,NULL,0.05,60.0,3,'["local", "may-see-pii"]','{"classification": "Text: {input}\nLabel:"}','{"classification": [["my card was charged twice", "billing"]]}','2026-11-30 23:50:49.147417','2026-11-30 23:50:49.147437');
INSERT INTO "models" VALUES(2,'gpt-4o-mini','litellm','gpt-4o-mini',NULL,'OPENAI_API_KEY',0.0,128,2048,0,0.15,0.6,NULL,60.0,3,'["hosted"]','{}','{}','2026-11-30 23:50:49.177650','2026-11-30 23:50:49.177671');
INSERT INTO "models" VALUES(3,'inhouse','litellm','openai/medium-served','http://127.0.0.1:8011/v1','INHOUSE_API_KEY',0.3,64,2048,0,NULL,NULL,NULL,30.0,1,'["hosted", "eu"]','{}','{}','2026-11-30 23:50:49.203197','2026-11-30 23:50:49.203214');
CREATE TABLE policies (
	id INTEGER NOT NULL, 
	name VARCHAR NOT NULL, 
	version INTEGER NOT NULL, 
	body VARCHAR NOT NULL, 
	workload VARCHAR, 
	metrics JSON NOT NULL, 
	created DATETIME NOT NULL, 
	PRIMARY KEY (id), 
	UNIQUE (name, version)
);
INSERT INTO "policies" VALUES(1,'triage',1,'schema_version: 1
name: triage
models:
  tiny-local: {provider: local, model: /opt/models/tiny-q4.gguf, tags: [local]}
  inhouse: {provider: openai_compatible, model: medium-served, api_base: ''http://127.0.0.1:8011/v1'',
            api_key_env: INHOUSE_API_KEY, input_price_per_mtok: 0.2, output_price_per_mtok: 0.6}
tiers:
- {model: tiny-local, accept_above: 0.7}
- {model: inhouse}
','support-triage','{"quality": 0.81}','2026-11-30 23:50:49.223776');
CREATE TABLE studies (
	id INTEGER NOT NULL, 
	name VARCHAR NOT NULL, 
	storage VARCHAR NOT NULL, 
	workload VARCHAR NOT NULL, 
	objective VARCHAR NOT NULL, 
	created DATETIME NOT NULL, 
	PRIMARY KEY (id)
);
INSERT INTO "studies" VALUES(1,'triage-min-cost','sqlite:///studies.db','support-triage','min-cost','2026-11-30 23:50:49.249895');
CREATE UNIQUE INDEX ix_models_name ON models (name);
CREATE INDEX ix_policies_name ON policies (name);
CREATE UNIQUE INDEX ix_studies_name ON studies (name);
COMMIT;
