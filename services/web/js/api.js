// The REST half of the public contract (docs/API.md): JSON in, JSON out, errors as
// {"error": {"code", "message"}}.

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export async function request(method, path, { token, body } = {}) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (token) headers.Authorization = `Bearer ${token}`;
  let response;
  try {
    response = await fetch(path, {
      method, headers, body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (err) {
    throw new ApiError(0, "network", "the server cannot be reached");
  }
  const data = await response.json().catch(() => ({}));
  if (!response.ok) {
    const error = data.error || {};
    throw new ApiError(response.status, error.code || "http", error.message || response.statusText);
  }
  return data;
}

export const register = (username, password) =>
  request("POST", "/api/users", { body: { username, password } });

export const logIn = (username, password) =>
  request("POST", "/api/tokens", { body: { username, password } });

export const listRooms = (token) => request("GET", "/api/rooms", { token });

export const createRoom = (token, name, isPrivate, members) =>
  request("POST", "/api/rooms", { token, body: { name, private: isPrivate, members } });

export function roomMessages(token, room, { before, after, limit = 50 } = {}) {
  const query = new URLSearchParams({ limit: String(limit) });
  if (before !== undefined) query.set("before", String(before));
  if (after !== undefined) query.set("after", String(after));
  return request("GET", `/api/rooms/${encodeURIComponent(room)}/messages?${query}`, { token });
}
