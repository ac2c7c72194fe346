package podmanlabels

import "container/list"

// lru is a fixed-size map of container IDs to entries that forgets the least recently used one
// when full: containers come and go, and the cache must not grow with every one ever seen.
// Its caller serializes access.
type lru struct {
	max   int
	order *list.List // of *lruItem, most recently used first
	items map[string]*list.Element
}

type lruItem struct {
	id string
	e  entry
}

func newLRU(size int) *lru {
	return &lru{max: size, order: list.New(), items: make(map[string]*list.Element)}
}

func (c *lru) get(id string) (entry, bool) {
	el, ok := c.items[id]
	if !ok {
		return entry{}, false
	}
	c.order.MoveToFront(el)
	return el.Value.(*lruItem).e, true
}

func (c *lru) put(id string, e entry) {
	if el, ok := c.items[id]; ok {
		el.Value.(*lruItem).e = e
		c.order.MoveToFront(el)
		return
	}
	c.items[id] = c.order.PushFront(&lruItem{id: id, e: e})
	if c.order.Len() > c.max {
		oldest := c.order.Back()
		c.order.Remove(oldest)
		delete(c.items, oldest.Value.(*lruItem).id)
	}
}

func (c *lru) len() int { return c.order.Len() }
