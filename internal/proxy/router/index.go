package router

// index finds the best route for a request.
type index struct {
	routes []*compiledRoute
}

func buildIndex(routes []*compiledRoute) *index {
	return &index{routes: routes}
}

func (x *index) find(q *reqInfo) *compiledRoute {
	for _, c := range x.routes {
		if c.match(q) {
			return c
		}
	}
	return nil
}
