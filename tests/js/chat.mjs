// Streaming chat through the official ollama npm client: node chat.mjs URL MODEL QUESTION
// Prints one JSON line: the joined text, the number of parts and whether the last part was done.
import { Ollama } from 'ollama'

const [host, model, question] = process.argv.slice(2)
const client = new Ollama({ host })
const stream = await client.chat({ model, messages: [{ role: 'user', content: question }], stream: true })
let text = ''
let parts = 0
let done = false
for await (const part of stream) {
  text += part.message.content
  parts += 1
  done = part.done
}
const tags = await client.list()
console.log(JSON.stringify({ text, parts, done, models: tags.models.map((m) => m.name) }))
