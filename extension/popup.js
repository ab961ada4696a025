/*
 * The popup: sign in to a BitBuddies server with an API key, choose a buddy, switch it on or off
 * per site. Everything that needs the key goes through the service worker.
 */
"use strict";

const $ = (id) => document.getElementById(id);

async function ask(type, fields) {
  const answer = await chrome.runtime.sendMessage(Object.assign({ type }, fields));
  if (!answer || !answer.ok) throw new Error((answer && answer.error) || "The extension did not answer.");
  return answer.result;
}

function say(text, isError) {
  $("message").textContent = text;
  $("message").classList.toggle("error", !!isError);
}

/** The http(s) site of the tab the popup was opened on (activeTab), or null. */
async function currentSite() {
  const [tab] = await chrome.tabs.query({ active: true, currentWindow: true }).catch(() => []);
  if (!tab || !tab.url || !/^https?:/.test(tab.url)) return null;
  return new URL(tab.url).host;
}

async function render() {
  const state = await ask("state");
  $("server").value = state.server;
  $("sign-in").hidden = state.signedIn;
  $("signed-in").hidden = !state.signedIn;
  if (!state.signedIn) return;
  $("email").textContent = state.email;
  $("server-name").textContent = state.server;

  const site = await currentSite();
  $("this-site-row").hidden = !site;
  if (site) {
    $("this-site-name").textContent = site;
    $("this-site").checked = !state.offSites.includes(site);
    $("this-site").onchange = () => ask("setSite", { host: site, on: $("this-site").checked }).then(render);
  }

  const offList = $("off-sites");
  offList.replaceChildren();
  $("off-sites-section").hidden = state.offSites.length === 0;
  for (const host of state.offSites) {
    const item = document.createElement("li");
    const button = document.createElement("button");
    button.type = "button";
    button.className = "link";
    button.textContent = "Turn on again";
    button.setAttribute("aria-label", "Turn on again on " + host);
    button.onclick = () => ask("setSite", { host, on: true }).then(render);
    item.append(host + " ", button);
    offList.append(item);
  }

  let buddies = [];
  try {
    buddies = await ask("listBuddies");
  } catch (error) {
    say(error.message, true);
  }
  const list = $("buddies");
  list.replaceChildren();
  $("no-buddies").hidden = buddies.length > 0;
  for (const buddy of buddies) {
    const item = document.createElement("li");
    const button = document.createElement("button");
    button.type = "button";
    button.dataset.slug = buddy.slug;
    button.setAttribute("aria-pressed", String(!!state.buddy && state.buddy.slug === buddy.slug));
    if (buddy.poster) {
      const poster = document.createElement("img");
      poster.src = buddy.poster;
      poster.alt = "";
      button.append(poster);
    }
    const name = document.createElement("span");
    name.textContent = buddy.title;
    button.append(name);
    button.title = "Choose " + buddy.title;
    button.onclick = async () => {
      await ask("choose", { buddy });
      say("Your buddy walks on the next page you open.");
      render();
    };
    item.append(button);
    list.append(item);
  }
}

$("sign-in").addEventListener("submit", async (event) => {
  event.preventDefault();
  say("");
  let origin;
  try {
    origin = new URL($("server").value).origin;
  } catch (error) {
    say("The server must be an address such as http://127.0.0.1:8000.", true);
    return;
  }
  // Host access to the configured server only, asked for now (a user gesture): http://127.0.0.1
  // is granted at install, any other server is the owner's choice.
  const granted = await chrome.permissions.request({ origins: [origin + "/*"] }).catch(() => false);
  if (!granted) {
    say("The extension needs permission to reach " + origin + ".", true);
    return;
  }
  try {
    await ask("signIn", { server: origin, apiKey: $("api-key").value.trim() });
    $("api-key").value = "";
    await render();
  } catch (error) {
    say(error.message, true);
  }
});

$("sign-out").addEventListener("click", () => ask("signOut").then(render));

render().catch((error) => say(error.message, true));
