# Browser client: socket.io-client and linkifyjs come from the npm lock and are copied where the
# page loads them (services/web/vendor/, git-ignored). npm runs only when the lock changed (stamp file).
WEB_DIR := services/web
WEB_NPM_STAMP := $(WEB_DIR)/node_modules/.installed-from-lock
WEB_SOCKETIO_DIST := $(WEB_DIR)/node_modules/socket.io-client/dist
WEB_LINKIFY_DIST := $(WEB_DIR)/node_modules/linkifyjs/dist

.PHONY: web-assets
web-assets: $(WEB_DIR)/vendor/socket.io.min.js $(WEB_DIR)/vendor/linkify.esm.js

# --ignore-scripts: the client needs files, never install hooks.
$(WEB_NPM_STAMP): $(WEB_DIR)/package-lock.json $(WEB_DIR)/package.json
	cd $(WEB_DIR) && npm ci --ignore-scripts --no-audit --no-fund
	touch $@

$(WEB_DIR)/vendor/socket.io.min.js: $(WEB_NPM_STAMP)
	mkdir -p $(WEB_DIR)/vendor
	cp $(WEB_SOCKETIO_DIST)/socket.io.min.js $(WEB_SOCKETIO_DIST)/socket.io.min.js.map $(WEB_DIR)/vendor/

# An ES module: rich.js imports it, in the browser and under node's test runner alike.
$(WEB_DIR)/vendor/linkify.esm.js: $(WEB_NPM_STAMP)
	mkdir -p $(WEB_DIR)/vendor
	cp $(WEB_LINKIFY_DIST)/linkify.mjs $@

# `make run` serves the page too, so it needs the assets as much as `make test` does.
run: web-assets
TEST_PREREQS += web-assets
