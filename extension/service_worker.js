/*
 * The extension's privileged side. It alone holds the API key (chrome.storage.local) and makes
 * the authenticated calls to the BitBuddies server; the content script on a page only ever gets a
 * buddy's public info (what /b/{slug}/buddy.json says), so a page's scripts can never see the key.
 *
 * Stored settings: server, apiKey, email, buddy ({slug, title}), offSites (hosts where the owner
 * switched the buddy off).
 */
"use strict";

const DEFAULT_SERVER = "http://127.0.0.1:8000";

// Content scripts may read chrome.storage.local by default; ours never need to, so the settings
// (the API key among them) are kept to the extension's own pages and this worker.
chrome.storage.local.setAccessLevel({ accessLevel: "TRUSTED_CONTEXTS" }).catch(() => {});

function settings() {
  return chrome.storage.local.get({ server: DEFAULT_SERVER, apiKey: "", email: "", buddy: null, offSites: [] });
}

async function callApi(path, server, apiKey) {
  const response = await fetch(server + path, {
    headers: { Authorization: "Bearer " + apiKey, Accept: "application/json" },
    credentials: "omit",
  });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    throw new Error(body.detail || "The server answered " + response.status + ".");
  }
  return body;
}

function cleanServer(server) {
  const url = new URL(server);
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new Error("The server must be an http:// or https:// address.");
  }
  return url.origin;
}

/** The owner's finished buddies, newest first: what the popup lets them choose from. */
async function listBuddies() {
  const { server, apiKey } = await settings();
  if (!apiKey) return [];
  const page = await callApi("/api/generations?limit=200", server, apiKey);
  return page.data
    .filter((generation) => generation.status === "succeeded" && generation.share_url)
    .map((generation) => ({
      slug: generation.share_url.split("/").pop(),
      title: generation.prompt,
      poster: generation.assets.poster,
    }));
}

/** What a page's content script may know: the chosen buddy's public info, unless it is off there. */
async function buddyForPage(host) {
  const { server, buddy, offSites } = await settings();
  if (!buddy || offSites.includes(host)) return null;
  const response = await fetch(server + "/b/" + encodeURIComponent(buddy.slug) + "/buddy.json", { credentials: "omit" });
  return response.ok ? response.json() : null; // a deleted buddy shows nowhere
}

const fromExtensionPage = (sender) => sender.id === chrome.runtime.id && (sender.url || "").startsWith(chrome.runtime.getURL(""));
const senderHost = (sender) => new URL(sender.url || sender.origin).host;

const popupActions = {
  async state() {
    const { server, apiKey, email, buddy, offSites } = await settings();
    return { server, signedIn: !!apiKey, email, buddy, offSites };
  },
  async signIn({ server, apiKey }) {
    server = cleanServer(server);
    const me = await callApi("/api/me", server, apiKey);
    await chrome.storage.local.set({ server, apiKey, email: me.email, buddy: null });
    return { email: me.email };
  },
  async signOut() {
    await chrome.storage.local.set({ apiKey: "", email: "", buddy: null });
    return {};
  },
  listBuddies,
  async choose({ buddy }) {
    await chrome.storage.local.set({ buddy: { slug: buddy.slug, title: buddy.title } });
    return {};
  },
  async setSite({ host, on }) {
    const { offSites } = await settings();
    const rest = offSites.filter((site) => site !== host);
    await chrome.storage.local.set({ offSites: on ? rest : rest.concat([host]) });
    return {};
  },
};

const pageActions = {
  buddyForPage: (message, sender) => buddyForPage(senderHost(sender)),
  async offForSite(message, sender) {
    return popupActions.setSite({ host: senderHost(sender), on: false });
  },
};

chrome.runtime.onMessage.addListener((message, sender, reply) => {
  // Content scripts get only the page actions; everything touching the key is for the popup.
  const action = fromExtensionPage(sender) ? popupActions[message.type] || pageActions[message.type] : pageActions[message.type];
  if (!action) return false;
  Promise.resolve()
    .then(() => action(message, sender))
    .then((result) => reply({ ok: true, result }), (error) => reply({ ok: false, error: String(error.message || error) }));
  return true; // answers asynchronously
});
